//! `DescribeInstanceAttribute`: one instance's attributes, flat (no `RegionId` needed; a `RegionId`
//! that is passed must match), or 404 `InvalidInstanceId.NotFound`.

use serde_json::json;

use super::view::instance_fields;
use super::{Answer, Context};
use crate::catalogue::EcsError;
use crate::emulator::lock;

pub(super) fn run(ctx: &Context<'_>) -> Answer {
    let p = ctx.params;
    let id = p.required("InstanceId")?;
    let region = p.non_empty("RegionId");
    let mut store = lock(&ctx.shared.store);
    let default_mode = store.default_stopped_mode();
    let (instance, started) = store
        .observe_with_start(id, ctx.now)
        .filter(|(i, _)| region.is_none_or(|r| i.region == r))
        .ok_or_else(EcsError::instance_not_found)?;
    let mut answer = instance_fields(instance, started, ctx.shared.created_at, default_mode);
    drop(store);
    answer.insert(
        "VpcAttributes".to_owned(),
        json!({"PrivateIpAddress": {"IpAddress": []}}),
    );
    answer.insert("PublicIpAddress".to_owned(), json!({"IpAddress": []}));
    answer.insert("InnerIpAddress".to_owned(), json!({"IpAddress": []}));
    answer.insert("EipAddress".to_owned(), json!({}));
    answer.insert(
        "SecurityGroupIds".to_owned(),
        json!({"SecurityGroupId": []}),
    );
    Ok(answer)
}
