//! `DescribeRegions`: the regions that hold emulated instances, each with its regional endpoint.

use serde_json::json;

use super::{Answer, Context};
use crate::emulator::lock;

// Every action answers `Answer`, so the dispatcher treats them alike; this one cannot fail.
#[allow(clippy::unnecessary_wraps)]
pub(super) fn run(ctx: &Context<'_>) -> Answer {
    let regions = lock(&ctx.shared.store).regions();
    let items: Vec<_> = regions
        .iter()
        .map(|r| {
            json!({
                "RegionId": r,
                "LocalName": r,
                "RegionEndpoint": format!("ecs.{r}.aliyuncs.com"),
                "Status": "available",
            })
        })
        .collect();
    Ok(super::object([("Regions", json!({ "Region": items }))]))
}
