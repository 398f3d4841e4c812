//! Per-account rate limits over HTTP: the keys of one account (and the STS credentials of a role
//! in it) share one budget per region and action, another account has its own; the per-minute
//! window; `x-acs-retry-after`; a throttled batch is refused whole and changes nothing; the
//! limits change at run time through the admin API and come back on reset.

#![allow(clippy::unwrap_used, clippy::panic)]

#[path = "support/client.rs"]
mod client;
#[path = "support/fixture.rs"]
mod fixture;

use ecs_emulator::{AccessKey, ActionLimit, Config, OidcConfig, RateLimits, Status};
use fixture::{REGION, config, start};
use serde_json::json;

const OTHER_ACCOUNT: &str = "5555000011112222";

/// The fixture's key plus a second key of the same (default) account and one of another.
fn three_keys(instances: &[(&str, Status)]) -> Config {
    let mut cfg = config(instances);
    cfg.access_keys
        .push(AccessKey::new("AK-SAME", "same-secret"));
    cfg.access_keys
        .push(AccessKey::new("AK-OTHER", "other-secret").in_account(OTHER_ACCOUNT));
    cfg
}

fn describe_in(region: &str) -> [(&str, &str); 1] {
    [("RegionId", region)]
}

#[tokio::test]
async fn keys_of_one_account_share_the_per_second_limit_per_region() {
    let mut cfg = three_keys(&[]);
    cfg.rate_limits = RateLimits::new([("DescribeInstances", ActionLimit::per_second(1))]);
    let (emu, first) = start(cfg).await;
    let same = client::Client::new(&emu.url(), "AK-SAME", "same-secret");
    let other = client::Client::new(&emu.url(), "AK-OTHER", "other-secret");

    let ok = first.call("DescribeInstances", &describe_in(REGION)).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    let refused = same.call("DescribeInstances", &describe_in(REGION)).await;
    assert_eq!((refused.status, refused.code()), (400, "Throttling.User"));
    assert_eq!(refused.retry_after, None, "retryAfter is off by default");
    assert_eq!(
        other
            .call("DescribeInstances", &describe_in(REGION))
            .await
            .status,
        200,
        "another account has its own budget"
    );
    assert_eq!(
        same.call("DescribeInstances", &describe_in("cn-beijing"))
            .await
            .status,
        200,
        "another region has its own budget"
    );
    assert_eq!(
        first
            .call("DescribeInstanceStatus", &describe_in(REGION))
            .await
            .status,
        200,
        "another action has its own budget"
    );
    let throttled: Vec<(String, String)> = emu
        .call_log()
        .iter()
        .filter(|c| c.is_throttled())
        .map(|c| {
            (
                c.access_key_id.clone().unwrap(),
                c.account_id.clone().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        throttled,
        [(
            "AK-SAME".to_owned(),
            ecs_emulator::DEFAULT_ACCOUNT_ID.to_owned()
        )]
    );
}

#[tokio::test]
async fn a_throttled_batch_is_refused_whole_and_changes_nothing() {
    let ids = ["i-1", "i-2", "i-3", "i-4", "i-5", "i-6"];
    let list: Vec<(&str, Status)> = ids.iter().map(|i| (*i, Status::Stopped)).collect();
    let mut cfg = config(&list);
    cfg.rate_limits =
        RateLimits::new([("StartInstances", ActionLimit::per_second(1))]).with_retry_after();
    let (emu, client) = start(cfg).await;
    let batch = |a: &'static str, b: &'static str, c: &'static str| {
        [
            ("RegionId", REGION),
            ("BatchOptimization", "SuccessFirst"),
            ("InstanceId.1", a),
            ("InstanceId.2", b),
            ("InstanceId.3", c),
        ]
    };
    let ok = client
        .call("StartInstances", &batch("i-1", "i-2", "i-3"))
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    let refused = client
        .call("StartInstances", &batch("i-4", "i-5", "i-6"))
        .await;
    assert_eq!((refused.status, refused.code()), (400, "Throttling.User"));
    let wait: u64 = refused.retry_after.as_deref().unwrap().parse().unwrap();
    assert!(
        (1..=1000).contains(&wait),
        "milliseconds to the next token: {wait}"
    );
    for id in ["i-4", "i-5", "i-6"] {
        assert_eq!(emu.instance(id).unwrap().status, Status::Stopped, "{id}");
    }
    let log = emu.call_log();
    assert_eq!(log[0].accepted_instances(), ["i-1", "i-2", "i-3"]);
    assert_eq!(log[0].instance_results.len(), 3);
    assert!(log[1].is_throttled() && !log[1].acted);
    assert!(log[1].accepted_instances().is_empty());
    assert_eq!(log[1].instance_ids, ["i-4", "i-5", "i-6"]);
}

#[tokio::test]
async fn the_per_minute_window_throttles_until_the_next_minute() {
    let mut cfg = three_keys(&[]);
    cfg.rate_limits =
        RateLimits::new([("DescribeInstances", ActionLimit::per_minute(2))]).with_retry_after();
    let (emu, client) = start(cfg).await;
    let same = client::Client::new(&emu.url(), "AK-SAME", "same-secret");
    // The window is the wall-clock minute: a run that straddles a minute boundary is redone.
    for _attempt in 0..3 {
        emu.set_rate_limits(
            RateLimits::new([("DescribeInstances", ActionLimit::per_minute(2))]).with_retry_after(),
        )
        .unwrap();
        let minute = jiff::Timestamp::now().as_second() / 60;
        let a = client.call("DescribeInstances", &describe_in(REGION)).await;
        let b = same.call("DescribeInstances", &describe_in(REGION)).await;
        let c = client.call("DescribeInstances", &describe_in(REGION)).await;
        if jiff::Timestamp::now().as_second() / 60 != minute {
            continue;
        }
        assert_eq!((a.status, b.status), (200, 200));
        assert_eq!((c.status, c.code()), (400, "Throttling.User"));
        let wait: u64 = c.retry_after.as_deref().unwrap().parse().unwrap();
        assert!(
            (1..=60_000).contains(&wait),
            "milliseconds to the next minute: {wait}"
        );
        return;
    }
    panic!("three runs straddled a minute boundary");
}

#[tokio::test]
async fn sts_credentials_spend_the_budget_of_their_roles_account() {
    let role = format!("acs:ram::{OTHER_ACCOUNT}:role/operator");
    let provider = format!("acs:ram::{OTHER_ACCOUNT}:oidc-provider/p");
    let mut cfg = three_keys(&[("i-a", Status::Stopped)]);
    cfg.oidc = Some(OidcConfig {
        role_arn: role.clone(),
        provider_arn: provider.clone(),
        duration_seconds: 3600,
        max_duration_seconds: None,
    });
    cfg.rate_limits = RateLimits::new([("*", ActionLimit::per_second(1))]);
    let (emu, fixture_key) = start(cfg).await;
    let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzIn0.c2ln";
    let issued = client::anonymous(
        &emu.url(),
        "AssumeRoleWithOIDC",
        "2015-04-01",
        &[
            ("RoleArn", role.as_str()),
            ("OIDCProviderArn", provider.as_str()),
            ("OIDCToken", jwt),
        ],
    )
    .await;
    assert_eq!(issued.status, 200, "anonymous calls are not limited");
    let creds = &issued.body["Credentials"];
    let sts = client::Client::new(
        &emu.url(),
        creds["AccessKeyId"].as_str().unwrap(),
        creds["AccessKeySecret"].as_str().unwrap(),
    )
    .with_token(creds["SecurityToken"].as_str().unwrap());
    let other = client::Client::new(&emu.url(), "AK-OTHER", "other-secret");
    assert_eq!(
        sts.call("StartInstance", &[("InstanceId", "i-a")])
            .await
            .status,
        200
    );
    // StartInstance names no RegionId: the instance's region is the one counted.
    let stop = other.call("StopInstance", &[("InstanceId", "i-a")]).await;
    assert_eq!(stop.status, 200, "another action: {}", stop.text);
    let refused = other.call("StartInstance", &[("InstanceId", "i-a")]).await;
    assert_eq!(
        refused.code(),
        "Throttling.User",
        "same account as the role"
    );
    let mine = fixture_key
        .call("StartInstance", &[("InstanceId", "i-a")])
        .await;
    assert_ne!(
        mine.code(),
        "Throttling.User",
        "the default account: {}",
        mine.text
    );
}

async fn admin(
    method: reqwest::Method,
    url: String,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut req = client::http().request(method, url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn limits_change_at_run_time_and_reset_restores_them() {
    let (emu, client) = start(config(&[])).await;
    let base = format!("{}/_emulator", emu.url());
    let (s, settings) = admin(
        reqwest::Method::PATCH,
        format!("{base}/settings"),
        Some(json!({"rateLimits": {
            "actions": {"DescribeInstances": {"perSecond": 1, "perMinute": 100}},
            "retryAfter": true,
            "holdMinute": true
        }})),
    )
    .await;
    assert_eq!(s, 200, "{settings}");
    assert_eq!(
        settings["rateLimits"]["actions"]["DescribeInstances"],
        json!({"perSecond": 1, "perMinute": 100})
    );
    assert_eq!(
        client
            .call("DescribeInstances", &describe_in(REGION))
            .await
            .status,
        200
    );
    let held = client.call("DescribeInstances", &describe_in(REGION)).await;
    assert_eq!(held.code(), "Throttling.User");
    let wait: u64 = held.retry_after.as_deref().unwrap().parse().unwrap();
    assert!(wait <= 60_000, "held to the next minute: {wait}");
    assert_eq!(
        emu.rate_limits(),
        RateLimits::new([(
            "DescribeInstances",
            ActionLimit::per_second(1).and_per_minute(100)
        )])
        .with_retry_after()
        .with_hold_minute()
    );

    let (s, e) = admin(
        reqwest::Method::PATCH,
        format!("{base}/settings"),
        Some(json!({"rateLimits": {"actions": {"Nope": {"perSecond": 1}}}})),
    )
    .await;
    assert_eq!(s, 400);
    assert!(e["error"].as_str().unwrap().contains("Nope"));

    let (s, _) = admin(
        reqwest::Method::POST,
        format!("{base}/access-keys"),
        Some(json!({"id": "AK-B", "secret": "S-B", "accountId": "77"})),
    )
    .await;
    assert_eq!(s, 204);
    let b = client::Client::new(&emu.url(), "AK-B", "S-B");
    let who = b.call("GetCallerIdentity", &[]).await;
    assert_eq!(who.body["AccountId"], "77");
    assert_eq!(
        b.call("DescribeInstances", &describe_in(REGION))
            .await
            .status,
        200,
        "account 77 is not held"
    );
    let (s, _) = admin(
        reqwest::Method::POST,
        format!("{base}/access-keys"),
        Some(json!({"id": "AK-C", "secret": "S-C", "accountId": "seventy"})),
    )
    .await;
    assert_eq!(s, 400);

    let (s, _) = admin(reqwest::Method::POST, format!("{base}/reset"), None).await;
    assert_eq!(s, 204);
    assert_eq!(emu.rate_limits(), RateLimits::default());
    assert_eq!(
        client
            .call("DescribeInstances", &describe_in(REGION))
            .await
            .status,
        200
    );
}
