//! `DescribeInstanceStatus`: `{InstanceId, Status}` of a region's instances, optionally only
//! `InstanceId.N` (≤ 100; unknown ids omitted) and `ZoneId`, paged with `PageNumber` (≥ 1) and
//! `PageSize` (1–50, default 10).

use serde_json::{Value, json};

use super::{Answer, Context};
use crate::catalogue::EcsError;
use crate::emulator::lock;
use crate::state::Instance;

pub(super) fn run(ctx: &Context<'_>) -> Answer {
    let p = ctx.params;
    let region = p.required("RegionId")?;
    let ids = p.indexed("InstanceId", 100)?;
    let zone = p.non_empty("ZoneId");
    let number = p.int_in("PageNumber", 1, u32::MAX, 1)? as usize;
    let size = p.int_in("PageSize", 1, 50, 10)? as usize;
    if p.bool("DryRun", false)? {
        return Err(EcsError::of("DryRunOperation"));
    }
    let skip = (number - 1).saturating_mul(size);
    let mut total = 0usize;
    let mut items = Vec::new();
    let mut consider = |i: &Instance| {
        let zone_ok = zone.is_none_or(|z| {
            i.zone
                .as_deref()
                .map_or_else(|| format!("{}-a", i.region) == z, |own| own == z)
        });
        if i.region != region || !zone_ok {
            return;
        }
        total += 1;
        if total > skip && items.len() < size {
            items.push(json!({"InstanceId": i.id, "Status": i.status.as_str()}));
        }
    };
    let mut store = lock(&ctx.shared.store);
    if ids.is_empty() {
        store.scan(None, ctx.now, |i, _| {
            consider(i);
            true
        });
    } else {
        let mut ids = ids;
        ids.sort();
        ids.dedup();
        for id in &ids {
            if let Some(i) = store.observe(id, ctx.now) {
                consider(i);
            }
        }
    }
    drop(store);
    Ok(super::object([
        (
            "InstanceStatuses",
            json!({ "InstanceStatus": Value::Array(items) }),
        ),
        ("TotalCount", json!(total)),
        ("PageNumber", json!(number)),
        ("PageSize", json!(size)),
    ]))
}
