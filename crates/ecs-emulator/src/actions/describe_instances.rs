//! DescribeInstances: instances of a region, optionally restricted to `InstanceIds` (a JSON
//! array of at most 100 ids; unknown ids are omitted), `Status`, `InstanceChargeType`,
//! `LockReason`, `ZoneId` and `Tag.N.Key` / `Tag.N.Value` (N ≤ 20; every given tag must be on
//! the instance, with that value when one is given), paged with `NextToken` + `MaxResults`
//! (≤ 100, default 10) or the older `PageNumber` + `PageSize` (≤ 100, chosen by giving either).
//! Without any paging parameter it answers as ECS does: at most 10 instances and a `NextToken`
//! when there are more, so a 100-id call without `MaxResults=100` sees only 10. `NextToken` is
//! opaque (the hex of the last id returned) and is empty on the last page. Each instance
//! carries its `Tags.Tag[]` (`TagKey`, `TagValue`).

use serde_json::{Value, json};

use super::view::instance_fields;
use super::{Answer, Context};
use crate::catalogue::EcsError;
use crate::emulator::lock;
use crate::state::{Instance, Status};

const LOCK_REASONS: &[&str] = &[
    "financial",
    "security",
    "recycling",
    "Recycling",
    "dedicatedhostfinancial",
    "refunded",
];

struct Filter<'a> {
    region: &'a str,
    status: Option<Status>,
    charge_type: Option<&'a str>,
    lock_reason: Option<&'a str>,
    zone: Option<&'a str>,
    tags: Vec<(&'a str, Option<&'a str>)>,
}

impl Filter<'_> {
    fn matches(&self, i: &Instance) -> bool {
        i.region == self.region
            && self.status.is_none_or(|s| i.status == s)
            && self.charge_type.is_none_or(|c| i.charge_type.as_str() == c)
            && self.lock_reason.is_none_or(|l| i.has_lock(l))
            && self.zone.is_none_or(|z| {
                i.zone
                    .as_deref()
                    .map_or_else(|| format!("{}-a", i.region) == z, |own| own == z)
            })
            && self.tags.iter().all(|(k, v)| {
                i.tags
                    .get(*k)
                    .is_some_and(|have| v.is_none_or(|want| have == want))
            })
    }
}

enum Paging {
    Token { after: Option<String>, max: usize },
    Pages { number: usize, size: usize },
}

fn paging(ctx: &Context<'_>) -> Result<Paging, EcsError> {
    let p = ctx.params;
    if p.non_empty("PageNumber").is_none() && p.non_empty("PageSize").is_none() {
        let max = p.int_in("MaxResults", 1, 100, 10)? as usize;
        let after = match p.non_empty("NextToken") {
            None => None,
            Some(t) => Some(
                hex::decode(t)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| {
                        EcsError::invalid("NextToken", "not a token this endpoint issued")
                    })?,
            ),
        };
        Ok(Paging::Token { after, max })
    } else {
        Ok(Paging::Pages {
            number: p.int_in("PageNumber", 1, u32::MAX, 1)? as usize,
            size: p.int_in("PageSize", 1, 100, 10)? as usize,
        })
    }
}

/// `Tag.N.Key` / `Tag.N.Value` for N = 1..=20; a value without its key is refused.
fn tag_filter<'a>(ctx: &Context<'a>) -> Result<Vec<(&'a str, Option<&'a str>)>, EcsError> {
    let p = ctx.params;
    let mut tags = Vec::new();
    for n in 1..=20 {
        let key = p.non_empty(&format!("Tag.{n}.Key"));
        let value = p.get(&format!("Tag.{n}.Value"));
        match (key, value) {
            (Some(k), v) => tags.push((k, v)),
            (None, Some(_)) => return Err(EcsError::of("InvalidTag.Mismatch")),
            (None, None) => {}
        }
    }
    Ok(tags)
}

pub(super) fn run(ctx: &Context<'_>) -> Answer {
    let p = ctx.params;
    let region = p.required("RegionId")?;
    let ids = p.json_list("InstanceIds", 100)?;
    let status = match p.non_empty("Status") {
        None => None,
        Some(s) => Some(
            s.parse::<Status>()
                .map_err(|_| EcsError::of("InvalidStatus.NotFound"))?,
        ),
    };
    let charge_type = p.non_empty("InstanceChargeType");
    if charge_type.is_some_and(|c| c != "PostPaid" && c != "PrePaid") {
        return Err(EcsError::of("InvalidInstanceChargeType.NotFound"));
    }
    let lock_reason = p.non_empty("LockReason");
    if lock_reason.is_some_and(|l| !LOCK_REASONS.contains(&l)) {
        return Err(EcsError::of("InvalidLockReason.NotFound"));
    }
    let filter = Filter {
        region,
        status,
        charge_type,
        lock_reason,
        zone: p.non_empty("ZoneId"),
        tags: tag_filter(ctx)?,
    };
    let paging = paging(ctx)?;
    if p.bool("DryRun", false)? {
        return Err(EcsError::of("DryRunOperation"));
    }

    let (skip, take, after) = match &paging {
        Paging::Token { after, max } => (0, *max, after.as_deref()),
        Paging::Pages { number, size } => ((number - 1).saturating_mul(*size), *size, None),
    };
    let mut store = lock(&ctx.shared.store);
    let default_mode = store.default_stopped_mode();
    let created = ctx.shared.created_at;
    let mut items = Vec::new();
    let mut total = 0usize;
    let mut eligible = 0usize;
    let mut last_id: Option<String> = None;
    let mut more = false;
    let mut consider = |i: &Instance, started: Option<i64>| {
        if !filter.matches(i) {
            return;
        }
        total += 1;
        if after.is_some_and(|a| i.id.as_str() <= a) {
            return;
        }
        eligible += 1;
        if eligible <= skip {
            return;
        }
        if items.len() < take {
            let mut fields = instance_fields(i, started, created, default_mode);
            let tags: Vec<Value> = i
                .tags
                .iter()
                .map(|(k, v)| json!({"TagKey": k, "TagValue": v}))
                .collect();
            fields.insert("Tags".to_owned(), json!({ "Tag": tags }));
            items.push(Value::Object(fields));
            last_id = Some(i.id.clone());
        } else {
            more = true;
        }
    };
    match ids {
        Some(mut ids) => {
            ids.sort();
            ids.dedup();
            for id in &ids {
                if let Some((i, started)) = store.observe_with_start(id, ctx.now) {
                    consider(i, started);
                }
            }
        }
        None => store.scan(None, ctx.now, |i, started| {
            consider(i, started);
            true
        }),
    }
    drop(store);

    let mut answer = super::object([("Instances", json!({ "Instance": items }))]);
    match paging {
        Paging::Token { .. } => {
            let next = if more {
                last_id.map(hex::encode).unwrap_or_default()
            } else {
                String::new()
            };
            answer.insert("NextToken".to_owned(), json!(next));
            answer.insert("TotalCount".to_owned(), json!(total));
        }
        Paging::Pages { number, size } => {
            answer.insert("NextToken".to_owned(), json!(""));
            answer.insert("TotalCount".to_owned(), json!(total));
            answer.insert("PageNumber".to_owned(), json!(number));
            answer.insert("PageSize".to_owned(), json!(size));
        }
    }
    Ok(answer)
}
