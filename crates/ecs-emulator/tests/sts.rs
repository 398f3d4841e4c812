//! STS AssumeRoleWithOIDC: anonymous exchange of an OIDC token for `STS.` credentials that then
//! authenticate ECS calls with their SecurityToken until they expire; GetCallerIdentity names
//! the account of a root key, a RAM user's key and assumed-role credentials.

#![allow(clippy::unwrap_used, clippy::panic)]

#[path = "support/client.rs"]
mod client;
#[path = "support/fixture.rs"]
mod fixture;

use std::time::Duration;

use base64::Engine as _;
use ecs_emulator::{AccessKey, DEFAULT_ACCOUNT_ID, OidcConfig, Status};
use fixture::{REGION, config, start, wait_until};

const ROLE: &str = "acs:ram::1234567890123456:role/operator";
const PROVIDER: &str = "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c1";

fn jwt(exp_offset: i64) -> String {
    let now = jiff::Timestamp::now().as_second();
    let payload = serde_json::json!({
        "iss": "https://oidc.example", "sub": "system:serviceaccount:ops:operator",
        "aud": ["sts.aliyuncs.com"], "exp": now + exp_offset, "iat": now,
    });
    let enc = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    format!(
        "{}.{}.{}",
        enc("{\"alg\":\"RS256\"}"),
        enc(&payload.to_string()),
        enc("signature")
    )
}

fn oidc(max: Option<u32>) -> OidcConfig {
    OidcConfig {
        role_arn: ROLE.to_owned(),
        provider_arn: PROVIDER.to_owned(),
        duration_seconds: 3600,
        max_duration_seconds: max,
    }
}

#[tokio::test]
async fn issued_credentials_work_until_they_expire() {
    let mut cfg = config(&[("i-a", Status::Running)]);
    cfg.oidc = Some(oidc(Some(2)));
    let (emu, _) = start(cfg).await;
    let token = jwt(600);
    let r = client::anonymous(
        &emu.url(),
        "AssumeRoleWithOIDC",
        "2015-04-01",
        &[
            ("RoleArn", ROLE),
            ("OIDCProviderArn", PROVIDER),
            ("OIDCToken", &token),
            ("RoleSessionName", "test"),
            ("DurationSeconds", "900"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let creds = &r.body["Credentials"];
    let id = creds["AccessKeyId"].as_str().unwrap();
    assert!(id.starts_with("STS."));
    assert!(creds["Expiration"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        r.body["OIDCTokenInfo"]["Subject"],
        "system:serviceaccount:ops:operator"
    );
    let sts_client =
        client::Client::new(&emu.url(), id, creds["AccessKeySecret"].as_str().unwrap())
            .with_token(creds["SecurityToken"].as_str().unwrap());
    assert_eq!(
        sts_client
            .call("DescribeInstances", &[("RegionId", REGION)])
            .await
            .status,
        200
    );
    assert!(
        wait_until(Duration::from_secs(15), || async {
            sts_client
                .call("DescribeInstances", &[("RegionId", REGION)])
                .await
                .code()
                == "InvalidSecurityToken.Expired"
        })
        .await,
        "credentials capped at 2 s expire"
    );
    let log = serde_json::to_string(&emu.call_log()).unwrap();
    assert!(!log.contains(creds["AccessKeySecret"].as_str().unwrap()));
    assert!(!log.contains(creds["SecurityToken"].as_str().unwrap()));
    assert!(!log.contains(&token));
}

#[tokio::test]
async fn bad_exchanges_are_refused() {
    let mut cfg = config(&[]);
    cfg.oidc = Some(oidc(None));
    let (emu, _) = start(cfg).await;
    let good = jwt(600);
    let call = |params: Vec<(&'static str, String)>| {
        let url = emu.url();
        async move {
            let p: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
            client::anonymous(&url, "AssumeRoleWithOIDC", "2015-04-01", &p).await
        }
    };
    let base = |role: &str, provider: &str, token: &str| {
        vec![
            ("RoleArn", role.to_owned()),
            ("OIDCProviderArn", provider.to_owned()),
            ("OIDCToken", token.to_owned()),
        ]
    };
    assert_eq!(
        call(base("acs:ram::1:role/other", PROVIDER, &good))
            .await
            .code(),
        "EntityNotExist.Role"
    );
    assert_eq!(
        call(base(ROLE, "acs:ram::1:oidc-provider/x", &good))
            .await
            .code(),
        "EntityNotExist.OIDCProvider"
    );
    assert_eq!(
        call(base(ROLE, PROVIDER, &jwt(-60))).await.code(),
        "AuthenticationFail.OIDCToken.Expired"
    );
    assert_eq!(
        call(base(ROLE, PROVIDER, "not-a-jwt")).await.code(),
        "AuthenticationFail.OIDCToken.Invalid"
    );
    let mut short = base(ROLE, PROVIDER, &good);
    short.push(("DurationSeconds", "60".to_owned()));
    assert_eq!(call(short).await.code(), "InvalidParameter.DurationSeconds");
    assert_eq!(
        call(vec![("RoleArn", ROLE.to_owned())]).await.code(),
        "MissingParameter"
    );
    let wrong_version =
        client::anonymous(&emu.url(), "AssumeRoleWithOIDC", "2014-05-26", &[]).await;
    assert_eq!(wrong_version.code(), "InvalidVersion");
    let (no_oidc, _) = start(config(&[])).await;
    let r = client::anonymous(
        &no_oidc.url(),
        "AssumeRoleWithOIDC",
        "2015-04-01",
        &[
            ("RoleArn", ROLE),
            ("OIDCProviderArn", PROVIDER),
            ("OIDCToken", &good),
        ],
    )
    .await;
    assert_eq!(r.code(), "EntityNotExist.Role");
}

#[tokio::test]
async fn get_caller_identity_names_the_account_of_every_credential() {
    let mut cfg = config(&[("i-a", Status::Running)]);
    cfg.access_keys.push(
        AccessKey::new("AK-ALICE", "alice-secret")
            .in_account("5555000011112222")
            .for_user("alice"),
    );
    cfg.oidc = Some(oidc(None));
    let (emu, root) = start(cfg).await;

    let me = root.call("GetCallerIdentity", &[]).await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.body["AccountId"], DEFAULT_ACCOUNT_ID);
    assert_eq!(me.body["IdentityType"], "Account");
    assert_eq!(
        me.body["Arn"],
        format!("acs:ram::{DEFAULT_ACCOUNT_ID}:root")
    );
    assert_eq!(me.body["UserId"], DEFAULT_ACCOUNT_ID);
    assert_eq!(me.body["PrincipalId"], DEFAULT_ACCOUNT_ID);
    assert!(me.body["RequestId"].as_str().is_some_and(|r| !r.is_empty()));

    let alice = client::Client::new(&emu.url(), "AK-ALICE", "alice-secret");
    let r = alice.call_v3("GetCallerIdentity", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["AccountId"], "5555000011112222");
    assert_eq!(r.body["IdentityType"], "RAMUser");
    assert_eq!(r.body["Arn"], "acs:ram::5555000011112222:user/alice");
    assert_eq!(r.body["UserId"], r.body["PrincipalId"]);

    let token = jwt(600);
    let issued = client::anonymous(
        &emu.url(),
        "AssumeRoleWithOIDC",
        "2015-04-01",
        &[
            ("RoleArn", ROLE),
            ("OIDCProviderArn", PROVIDER),
            ("OIDCToken", &token),
            ("RoleSessionName", "op-session"),
        ],
    )
    .await;
    let creds = &issued.body["Credentials"];
    let sts = client::Client::new(
        &emu.url(),
        creds["AccessKeyId"].as_str().unwrap(),
        creds["AccessKeySecret"].as_str().unwrap(),
    )
    .with_token(creds["SecurityToken"].as_str().unwrap());
    let r = sts.call("GetCallerIdentity", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["AccountId"], "1234567890123456",
        "the role's account"
    );
    assert_eq!(r.body["IdentityType"], "AssumedRoleUser");
    assert_eq!(
        r.body["Arn"],
        "acs:ram::1234567890123456:assumed-role/operator/op-session"
    );
    let role_id = r.body["RoleId"].as_str().unwrap();
    assert_eq!(r.body["PrincipalId"], format!("{role_id}:op-session"));
    assert_eq!(
        issued.body["AssumedRoleUser"]["AssumedRoleId"],
        format!("{role_id}:op-session")
    );

    let wrong_version = root
        .call("GetCallerIdentity", &[("Version", "2014-05-26")])
        .await;
    assert_eq!(wrong_version.code(), "InvalidVersion");
    let unsigned = client::anonymous(&emu.url(), "GetCallerIdentity", "2015-04-01", &[]).await;
    assert_ne!(unsigned.status, 200, "{}", unsigned.text);

    let accounts: Vec<Option<String>> = emu
        .call_log()
        .iter()
        .filter(|c| c.action == "GetCallerIdentity" && c.http_status == Some(200))
        .map(|c| c.account_id.clone())
        .collect();
    assert_eq!(
        accounts,
        [
            Some(DEFAULT_ACCOUNT_ID.to_owned()),
            Some("5555000011112222".to_owned()),
            Some("1234567890123456".to_owned())
        ]
    );
}
