//! RRSA end to end against the in-process ecs-emulator: a projected-token file is exchanged at
//! STS `AssumeRoleWithOIDC` for `STS.` credentials, those sign ECS calls, and they are refreshed
//! (with the token file read again) before they expire. The emulator grants credentials that live
//! only a few seconds (`oidc.maxDurationSeconds`), so expiry and refresh happen within the test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use ecs_emulator::{CallRecord, Config, Emulator, FOREVER, Fault, Instance, OidcConfig, Status};
use ecs_power_operator::ecs::catalogue::reason;
use ecs_power_operator::ecs::redaction::Redactor;
use ecs_power_operator::ecs::{
    Credentials, CredentialsError, EcsClient, EcsClientConfig, EcsError, Endpoint, ErrorClass,
    InstanceStatus, OperatorCredentials, RrsaConfig, RrsaProvider, classify, classify_credentials,
};

const ROLE: &str = "acs:ram::1234567890123456:role/ecs-power-operator";
const PROVIDER: &str = "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c123";
const REGION: &str = "cn-hangzhou";
const INSTANCE: &str = "i-rrsa";

/// A JWT (unsigned, which the emulator does not check) for `subject`, expiring `exp_offset` s
/// from now.
fn jwt(subject: &str, exp_offset: i64) -> String {
    let now = jiff::Timestamp::now().as_second();
    let payload = serde_json::json!({
        "iss": "https://oidc-ack-cn-hangzhou.oss-cn-hangzhou.aliyuncs.com/c123",
        "sub": subject,
        "aud": ["sts.aliyuncs.com"],
        "exp": now + exp_offset,
        "iat": now,
    });
    let enc = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    format!(
        "{}.{}.{}",
        enc(r#"{"alg":"RS256","kid":"k1"}"#),
        enc(&payload.to_string()),
        enc(&format!("signature-of-{subject}-{now}"))
    )
}

/// Replaces the token file the way the kubelet's atomic writer does (write aside, rename).
fn write_token(path: &Path, token: &str) {
    let aside = path.with_extension("tmp");
    std::fs::write(&aside, format!("{token}\n")).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

/// An emulator granting credentials for at most `max_seconds`, with one Running instance.
async fn emulator(max_seconds: Option<u32>) -> Emulator {
    let config = Config {
        transition_delay: Duration::ZERO,
        instances: vec![Instance::new(INSTANCE, REGION, Status::Running)],
        oidc: Some(OidcConfig {
            role_arn: ROLE.to_owned(),
            provider_arn: PROVIDER.to_owned(),
            duration_seconds: 3600,
            max_duration_seconds: max_seconds,
        }),
        ..Config::default()
    };
    Emulator::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap()
}

/// The environment the ACK webhook would inject, with the STS endpoint pointed at `sts_url`.
fn env(sts_url: &str, token_file: &Path) -> impl Fn(&str) -> Option<OsString> + use<> {
    let map: BTreeMap<&str, OsString> = [
        ("ALIBABA_CLOUD_ROLE_ARN", OsString::from(ROLE)),
        ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", OsString::from(PROVIDER)),
        (
            "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
            token_file.as_os_str().to_owned(),
        ),
        ("ALIBABA_CLOUD_STS_ENDPOINT", OsString::from(sts_url)),
        // Ignored: the explicit endpoint wins.
        ("ALIBABA_CLOUD_STS_REGION", OsString::from(REGION)),
        ("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED", OsString::from("true")),
    ]
    .into_iter()
    .collect();
    move |name| map.get(name).cloned()
}

fn ecs_client(emu: &Emulator) -> EcsClient {
    EcsClient::new(EcsClientConfig::new(
        Endpoint::override_url(&emu.url()).unwrap(),
    ))
    .unwrap()
}

fn sts_calls(emu: &Emulator) -> Vec<CallRecord> {
    emu.call_log()
        .into_iter()
        .filter(|c| c.action == "AssumeRoleWithOIDC")
        .collect()
}

/// Polls `check` every 25 ms until it gives `Some`, at most `timeout`.
async fn poll<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Every test is bounded: a hung exchange fails the test instead of hanging CI.
async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("test step finished within 60 s")
}

/// "Done when": a token file is exchanged for STS credentials at the emulator, they sign ECS
/// calls, concurrent callers share one exchange, and the credentials are refreshed — with the
/// token file read again — before they expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchanges_token_uses_sts_credentials_and_refreshes_before_expiry() {
    bounded(async {
        let emu = emulator(Some(6)).await;
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        let first_subject = "system:serviceaccount:ecs-power-operator:operator";
        write_token(&token_file, &jwt(first_subject, 3600));

        let operator = OperatorCredentials::discover_with(env(&emu.url(), &token_file))
            .unwrap()
            .unwrap();
        let OperatorCredentials::Rrsa(provider) = &operator else {
            panic!("expected RRSA, got {operator:?}");
        };
        assert_eq!(provider.config().sts_endpoint, emu.url());
        assert!(sts_calls(&emu).is_empty(), "discovery makes no call");

        // Sixteen concurrent reconciles ask at once: one exchange, one answer for all.
        let asked = futures::future::join_all((0..16).map(|_| {
            let operator = operator.clone();
            tokio::spawn(async move { operator.credentials().await })
        }))
        .await;
        let all: Vec<Credentials> = asked.into_iter().map(|r| r.unwrap().unwrap()).collect();
        let first = all[0].clone();
        assert!(all.iter().all(|c| *c == first));
        assert!(first.access_key_id.starts_with("STS."), "{first:?}");
        assert!(first.security_token.is_some());
        let calls = sts_calls(&emu);
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(
            calls[0].signature,
            Some(ecs_emulator::SignatureScheme::Anonymous)
        );
        assert_eq!(calls[0].http_status, Some(200));
        assert_eq!(provider.exchanges(), 1);

        let session = provider.session().unwrap();
        assert_eq!(session.access_key_id, first.access_key_id);
        assert_eq!(session.subject.as_deref(), Some(first_subject));
        assert!(
            session
                .assumed_role_arn
                .as_deref()
                .is_some_and(|a| a.starts_with(ROLE)),
            "{session:?}"
        );
        let now = jiff::Timestamp::now();
        assert!(now < session.refresh_window.refresh_at && session.refresh_window.refresh_at < session.expiration);

        // The STS credentials sign ECS calls.
        let ecs = ecs_client(&emu);
        let seen = ecs
            .describe_instance(&first, REGION, INSTANCE)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(seen.status, InstanceStatus::Running);
        let describe = emu
            .call_log()
            .into_iter()
            .rfind(|c| c.action == "DescribeInstances")
            .unwrap();
        assert_eq!(
            describe.access_key_id.as_deref(),
            Some(first.access_key_id.as_str())
        );
        assert_eq!(describe.http_status, Some(200));

        // The kubelet rotates the token; the next exchange must read the new one.
        let second_subject = "system:serviceaccount:ecs-power-operator:rotated";
        write_token(&token_file, &jwt(second_subject, 3600));

        // Keep asking, as reconciles do, until the refresh happens.
        let refreshed = poll(Duration::from_secs(20), || async {
            let c = operator.credentials().await.unwrap();
            (c.access_key_id != first.access_key_id).then(|| (c, jiff::Timestamp::now()))
        })
        .await;
        let (second, refreshed_at) = refreshed.expect("credentials refreshed within 20 s");
        assert!(
            refreshed_at < session.expiration,
            "refreshed at {refreshed_at}, after the old credentials expired at {}",
            session.expiration
        );
        assert!(
            refreshed_at >= session.refresh_window.refresh_at,
            "refreshed at {refreshed_at}, before the refresh time {}",
            session.refresh_window.refresh_at
        );
        let renewed = provider.session().unwrap();
        assert_eq!(renewed.access_key_id, second.access_key_id);
        assert_eq!(
            renewed.subject.as_deref(),
            Some(second_subject),
            "the refresh exchanged the rotated token"
        );
        assert_eq!(
            sts_calls(&emu).len(),
            2,
            "polling between refreshes made no extra exchange"
        );

        // Refreshed early: the old credentials still work, and so do the new ones.
        assert!(
            ecs.describe_instance(&first, REGION, INSTANCE)
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            ecs.describe_instance(&second, REGION, INSTANCE)
                .await
                .unwrap()
                .is_some()
        );

        // Once the old credentials expire ECS rejects them, while the provider's keep working.
        let rejected = poll(Duration::from_secs(20), || async {
            ecs.describe_instance(&first, REGION, INSTANCE).await.err()
        })
        .await
        .expect("the old credentials expire");
        assert!(
            matches!(&rejected, EcsError::Api { code, .. } if code == "InvalidSecurityToken.Expired"),
            "{rejected:?}"
        );
        assert_eq!(classify(&rejected).reason, reason::CREDENTIALS_REJECTED);
        let current = operator.credentials().await.unwrap();
        assert!(
            ecs.describe_instance(&current, REGION, INSTANCE)
                .await
                .unwrap()
                .is_some()
        );
    })
    .await;
}

/// While one caller refreshes (STS slow), the others keep getting the still-valid cached
/// credentials at once instead of queueing behind the exchange.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_in_flight_does_not_block_other_callers() {
    bounded(async {
        let emu = emulator(Some(6)).await;
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        write_token(
            &token_file,
            &jwt("system:serviceaccount:ops:operator", 3600),
        );
        let operator = OperatorCredentials::discover_with(env(&emu.url(), &token_file))
            .unwrap()
            .unwrap();
        let OperatorCredentials::Rrsa(provider) = &operator else {
            panic!("expected RRSA, got {operator:?}");
        };
        let first = operator.credentials().await.unwrap();
        let session = provider.session().unwrap();
        let slow = Duration::from_millis(1500);
        emu.add_fault(Fault::delay(slow).for_action("AssumeRoleWithOIDC").times(1))
            .unwrap();
        poll(Duration::from_secs(20), || async {
            (jiff::Timestamp::now() >= session.refresh_window.refresh_at).then_some(())
        })
        .await
        .unwrap();
        let timed = || {
            let operator = operator.clone();
            async move {
                let started = Instant::now();
                let creds = operator.credentials().await.unwrap();
                (creds, started.elapsed())
            }
        };
        let (a, b) = tokio::join!(tokio::spawn(timed()), tokio::spawn(timed()));
        let (mut a, mut b) = (a.unwrap(), b.unwrap());
        if a.1 > b.1 {
            std::mem::swap(&mut a, &mut b);
        }
        let ((quick, quick_took), (refreshed, refresh_took)) = (a, b);
        assert_eq!(
            quick, first,
            "the waiting-free caller got the cached credentials"
        );
        assert!(quick_took < Duration::from_secs(1), "{quick_took:?}");
        assert_ne!(refreshed.access_key_id, first.access_key_id);
        assert!(refresh_took >= slow, "{refresh_took:?}");
        assert_eq!(sts_calls(&emu).len(), 2);
        assert_eq!(operator.credentials().await.unwrap(), refreshed);
    })
    .await;
}

fn provider_for(emu: &Emulator, token_file: &Path, role: &str) -> RrsaProvider {
    let mut config = RrsaConfig::new(role, PROVIDER, token_file);
    config.sts_endpoint = emu.url();
    config.failure_cooldown = Duration::ZERO;
    RrsaProvider::new(config).unwrap()
}

/// Refused tokens give the terminal `CredentialsRejected` verdict, and nothing at any log level
/// ever shows the token, the AccessKey secret or the security token.
#[tokio::test]
async fn rejected_tokens_are_terminal_and_logs_never_hold_secrets() {
    let captured = support::logs::Buffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(captured.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let emu = emulator(None).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    let provider = provider_for(&emu, &token_file, ROLE);
    let mut tokens = Vec::new();

    // The kubelet stopped rotating: the token expired.
    let expired = jwt("system:serviceaccount:ops:stale", -60);
    write_token(&token_file, &expired);
    tokens.push(expired);
    let err = bounded(provider.credentials()).await.unwrap_err();
    assert_eq!(err.code(), Some("AuthenticationFail.OIDCToken.Expired"));
    let verdict = classify_credentials(&err);
    assert_eq!(verdict.reason, reason::CREDENTIALS_REJECTED);
    assert_eq!(verdict.class, ErrorClass::Terminal);

    // Not a JWT at all.
    let garbage = "not-a-jwt-but-still-a-secret-value".to_owned();
    write_token(&token_file, &garbage);
    tokens.push(garbage);
    let err = bounded(provider.credentials()).await.unwrap_err();
    assert_eq!(err.code(), Some("AuthenticationFail.OIDCToken.Invalid"));
    assert_eq!(
        classify_credentials(&err).reason,
        reason::CREDENTIALS_REJECTED
    );

    // A role the cluster's OIDC provider may not assume.
    let good = jwt("system:serviceaccount:ops:operator", 3600);
    write_token(&token_file, &good);
    tokens.push(good.clone());
    let wrong_role = provider_for(&emu, &token_file, "acs:ram::1234567890123456:role/other");
    let err = bounded(wrong_role.credentials()).await.unwrap_err();
    assert_eq!(err.code(), Some("EntityNotExist.Role"));
    assert_eq!(
        classify_credentials(&err),
        classify_credentials(&CredentialsError::Exchange {
            code: "AuthenticationFail.OIDCToken.Expired".into(),
            message: String::new(),
            http_status: 400,
            request_id: None,
        })
    );

    // The token file disappears: a setup problem, not an STS verdict.
    let gone = provider_for(&emu, &dir.path().join("absent"), ROLE);
    let err = bounded(gone.credentials()).await.unwrap_err();
    assert!(matches!(err, CredentialsError::TokenFile { .. }), "{err:?}");
    assert_eq!(
        classify_credentials(&err).reason,
        reason::CREDENTIALS_INVALID
    );

    // STS down: transient.
    emu.add_fault(
        Fault::error("ServiceUnavailable")
            .for_action("AssumeRoleWithOIDC")
            .times(1),
    )
    .unwrap();
    let err = bounded(provider.credentials()).await.unwrap_err();
    let verdict = classify_credentials(&err);
    assert_eq!(
        (verdict.reason.as_str(), verdict.class),
        (reason::STS_UNAVAILABLE, ErrorClass::Transient),
        "{err:?}"
    );

    // With the good token the same provider recovers, and the credentials sign an ECS call.
    let creds = bounded(provider.credentials()).await.unwrap();
    assert!(
        bounded(ecs_client(&emu).describe_instance(&creds, REGION, INSTANCE))
            .await
            .unwrap()
            .is_some()
    );

    let logs = captured.text();
    // The capture works and says what happened …
    for wanted in [
        "STS AssumeRoleWithOIDC failed",
        "AuthenticationFail.OIDCToken.Expired",
        "EntityNotExist.Role",
        "obtained STS credentials with the RRSA token",
        ROLE,
        creds.access_key_id.as_str(),
        "DescribeInstances",
    ] {
        assert!(logs.contains(wanted), "log lacks {wanted:?}:\n{logs}");
    }
    // … and never a secret, in any encoding a URL or form body would use.
    let mut secrets: Vec<String> = tokens;
    secrets.push(creds.access_key_secret.expose().to_owned());
    secrets.push(creds.security_token.as_ref().unwrap().expose().to_owned());
    let mut redactor = Redactor::new();
    for secret in &secrets {
        redactor.add(secret);
    }
    // (`assert!`, not `assert_eq!`: a failure must not print the secrets it found.)
    assert!(redactor.redact(&logs) == logs, "a secret reached the log");
    // The JWT's payload alone is sensitive too.
    let payload = good.split('.').nth(1).unwrap();
    assert!(
        !logs.contains(payload),
        "the token's payload reached the log"
    );
}

/// A refresh that fails keeps the cached credentials in use while they have time left, retries
/// after the cooldown, and stops handing them out shortly before they expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_refresh_keeps_cached_credentials_until_shortly_before_expiry() {
    bounded(async {
        let emu = emulator(Some(6)).await;
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        write_token(
            &token_file,
            &jwt("system:serviceaccount:ops:operator", 3600),
        );
        let mut config = RrsaConfig::new(ROLE, PROVIDER, &token_file);
        config.sts_endpoint = emu.url();
        config.failure_cooldown = Duration::from_millis(300);
        let provider = RrsaProvider::new(config).unwrap();

        // Phase 1: the first refresh attempt fails once; the next one, after the cooldown, works.
        let first = provider.credentials().await.unwrap();
        let session = provider.session().unwrap();
        emu.add_fault(
            Fault::error("ServiceUnavailable")
                .for_action("AssumeRoleWithOIDC")
                .times(1),
        )
        .unwrap();
        let during_failure = poll(Duration::from_secs(20), || async {
            let c = provider.credentials().await.unwrap();
            (provider.exchanges() == 2).then_some(c)
        })
        .await
        .expect("a refresh was attempted");
        assert_eq!(
            during_failure, first,
            "the failed refresh handed out the cached credentials"
        );
        let second = poll(Duration::from_secs(20), || async {
            let c = provider.credentials().await.unwrap();
            (c.access_key_id != first.access_key_id).then_some(c)
        })
        .await
        .expect("the retry after the cooldown succeeded");
        assert!(jiff::Timestamp::now() < session.expiration);
        let codes: Vec<Option<String>> =
            sts_calls(&emu).into_iter().map(|c| c.error_code).collect();
        assert_eq!(codes, [None, Some("ServiceUnavailable".to_owned()), None]);

        // Phase 2: STS stays down. The cached credentials are handed out until shortly before
        // they expire; then the caller gets the (transient) STS error, never expired keys.
        let session = provider.session().unwrap();
        emu.add_fault(
            Fault::error("ServiceUnavailable")
                .for_action("AssumeRoleWithOIDC")
                .times(FOREVER),
        )
        .unwrap();
        let err = poll(Duration::from_secs(20), || async {
            match provider.credentials().await {
                Ok(c) => {
                    assert_eq!(c, second);
                    None
                }
                Err(e) => Some((e, jiff::Timestamp::now())),
            }
        })
        .await;
        let (err, failed_at) = err.expect("the cached credentials ran out");
        assert!(failed_at >= session.refresh_window.usable_until);
        assert!(
            failed_at < session.expiration,
            "stopped handing out at {failed_at}, only after expiry {}",
            session.expiration
        );
        assert_eq!(err.code(), Some("ServiceUnavailable"));
        assert_eq!(classify_credentials(&err).class, ErrorClass::Transient);
        // Attempts were spaced by the cooldown, not made on every call.
        let attempts = sts_calls(&emu).len();
        assert!(attempts <= 12, "{attempts} exchanges");
    })
    .await;
}
