//! `StartInstance`, `StopInstance` and `RebootInstance`: one instance by `InstanceId` (no
//! `RegionId` needed; one that is passed must match the instance's region). The instance must exist and
//! pass `rules::check`; `DryRun=true` then answers `DryRunOperation` and changes nothing;
//! otherwise the transition begins and the answer is just the `RequestId`. `StopInstance` takes
//! `StoppedMode` (ignored for `PrePaid` instances, which keep charging) and `ForceStop`;
//! `StartInstance` takes `InitLocalDisk`; `RebootInstance` takes `ForceStop`.

use serde_json::Map;

use super::rules::{Op, check};
use super::{Answer, Context};
use crate::catalogue::EcsError;
use crate::emulator::lock;
use crate::state::{ChargeType, StoppedMode};

pub(super) fn run(ctx: &Context<'_>, op: Op) -> Answer {
    let p = ctx.params;
    let id = p.required("InstanceId")?;
    let region = p.non_empty("RegionId");
    let dry_run = p.bool("DryRun", false)?;
    let mut stopped_mode = None;
    match op {
        Op::Start => {
            p.bool("InitLocalDisk", false)?;
        }
        Op::Stop => {
            p.bool("ForceStop", false)?;
            p.bool("ConfirmStop", false)?;
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
        Op::Reboot => {
            p.bool("ForceStop", false)?;
        }
    }

    let mut store = lock(&ctx.shared.store);
    let instance = store
        .observe(id, ctx.now)
        .filter(|i| region.is_none_or(|r| i.region == r))
        .ok_or_else(EcsError::instance_not_found)?;
    check(op, instance, ctx.now_ts)?;
    if dry_run {
        return Err(EcsError::of("DryRunOperation"));
    }
    if let Some(mode) = stopped_mode {
        instance.stopped_mode = Some(if instance.charge_type == ChargeType::PrePaid {
            StoppedMode::KeepCharging
        } else {
            mode
        });
    }
    store.begin(id, op.transition(), ctx.now);
    Ok(Map::new())
}
