//! `StartInstances` and `StopInstances`: `RegionId` plus `InstanceId.1..N` (N ≤ 100, no repeats).
//!
//! - `BatchOptimization=AllTogether` (default): all or nothing. Every instance is checked in
//!   order (exists in the region, `rules::check`); the first failure is the whole answer with
//!   its own HTTP status and nothing changes. `DryRun=true` then answers `DRYRUN.SUCCESS`.
//!   Otherwise all transitions begin and each instance gets a `"Code": "200"` entry.
//! - `SuccessFirst`: each instance on its own. A dry run answers `DRYRUN.SUCCESS` at once (as
//!   ECS documents). Otherwise every instance gets an `InstanceResponse` with `Code` `"200"` or
//!   its error code (including its own scripted fault), and the answer is HTTP 200.
//!
//! Entries carry `InstanceId`, `Code`, `Message`, `PreviousStatus`, `CurrentStatus` (empty
//! statuses for unknown instances).

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use super::rules::{Op, check};
use super::{Answer, Context};
use crate::catalogue::EcsError;
use crate::emulator::lock;
use crate::faults::{Outcome, Scope};
use crate::state::{ChargeType, Instance, StoppedMode};

fn entry(id: &str, code: &str, message: &str, previous: &str, current: &str) -> Value {
    json!({
        "InstanceId": id,
        "Code": code,
        "Message": message,
        "PreviousStatus": previous,
        "CurrentStatus": current,
    })
}

fn answer(entries: &[Value]) -> Map<String, Value> {
    super::object([("InstanceResponses", json!({ "InstanceResponse": entries }))])
}

pub(super) fn run(ctx: &Context<'_>, op: Op) -> Answer {
    let p = ctx.params;
    let action = if op == Op::Start {
        "StartInstances"
    } else {
        "StopInstances"
    };
    let region = p.required("RegionId")?;
    let ids = p.indexed("InstanceId", 100)?;
    if ids.is_empty() {
        return Err(EcsError::missing("InstanceId.1"));
    }
    let mut seen = HashSet::new();
    if let Some(dup) = ids.iter().find(|id| !seen.insert(id.as_str())) {
        return Err(EcsError::invalid(
            "InstanceId.N",
            &format!("{dup} is given more than once"),
        ));
    }
    let success_first = p
        .one_of("BatchOptimization", &["AllTogether", "SuccessFirst"])?
        .is_some_and(|b| b == "SuccessFirst");
    let dry_run = p.bool("DryRun", false)?;
    let mut stopped_mode = None;
    if op == Op::Stop {
        p.bool("ForceStop", false)?;
        stopped_mode = p
            .one_of("StoppedMode", &["KeepCharging", "StopCharging"])?
            .map(|m| {
                if m == "StopCharging" {
                    StoppedMode::StopCharging
                } else {
                    StoppedMode::KeepCharging
                }
            });
    }
    let apply_mode = |i: &mut Instance| {
        if let Some(mode) = stopped_mode {
            i.stopped_mode = Some(if i.charge_type == ChargeType::PrePaid {
                StoppedMode::KeepCharging
            } else {
                mode
            });
        }
    };

    if success_first {
        if dry_run {
            return Err(EcsError::of("DRYRUN.SUCCESS"));
        }
        let injected: Vec<Option<EcsError>> = {
            let mut faults = lock(&ctx.shared.faults);
            ids.iter()
                .map(|id| {
                    match faults
                        .fire(action, Scope::Instance(id), crate::emulator::roll)
                        .outcome
                    {
                        Some(Outcome::Error(e)) => Some(e),
                        _ => None,
                    }
                })
                .collect()
        };
        let mut store = lock(&ctx.shared.store);
        let mut entries = Vec::with_capacity(ids.len());
        for (id, injected) in ids.iter().zip(injected) {
            let Some(instance) = store.observe(id, ctx.now).filter(|i| i.region == region) else {
                let e = injected.unwrap_or_else(EcsError::instance_not_found);
                entries.push(entry(id, &e.code, &e.message, "", ""));
                continue;
            };
            let previous = instance.status.as_str();
            if let Some(e) = injected.map_or_else(|| check(op, instance, ctx.now_ts).err(), Some) {
                entries.push(entry(id, &e.code, &e.message, previous, previous));
                continue;
            }
            apply_mode(instance);
            let current = store
                .begin(id, op.transition(), ctx.now)
                .map_or("", |s| s.as_str());
            entries.push(entry(id, "200", "success", previous, current));
        }
        return Ok(answer(&entries));
    }

    let mut store = lock(&ctx.shared.store);
    let mut previous = Vec::with_capacity(ids.len());
    for id in &ids {
        let instance = store
            .observe(id, ctx.now)
            .filter(|i| i.region == region)
            .ok_or_else(|| {
                EcsError::instance_not_found()
                    .with_message(format!("The specified InstanceId does not exist: {id}."))
            })?;
        check(op, instance, ctx.now_ts)?;
        previous.push(instance.status.as_str());
    }
    if dry_run {
        return Err(EcsError::of("DRYRUN.SUCCESS"));
    }
    let mut entries = Vec::with_capacity(ids.len());
    for (id, previous) in ids.iter().zip(previous) {
        if let Some(instance) = store.observe(id, ctx.now) {
            apply_mode(instance);
        }
        let current = store
            .begin(id, op.transition(), ctx.now)
            .map_or("", |s| s.as_str());
        entries.push(entry(id, "200", "success", previous, current));
    }
    Ok(answer(&entries))
}
