//! Fuzzing the client's edges with proptest (stable toolchain, bounded case counts, so it runs in
//! every `cargo test`): whatever bytes an endpoint answers, the interpretation of every action
//! never panics, and a 2xx body that is not the expected JSON (arbitrary bytes, or a valid answer
//! cut short anywhere) is always `MalformedResponse`, an ambiguous outcome, never a success or an
//! API verdict. Error bodies of any status are classified without panicking. The signer's inputs:
//! percent-encoding round-trips through a standard decoder and keeps only the unreserved set,
//! the canonical query parses back into the same parameters, and the signature is deterministic.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;

use percent_encoding::percent_decode_str;
use proptest::prelude::*;

use super::transport::RawAnswer;
use super::*;
use crate::ecs::error::Delivery;
use crate::ecs::redaction::Redactor;
use crate::ecs::signature::{canonical_query, percent_encode, sign};

/// Well-formed 2xx answers of each action; the truncation tests cut them anywhere.
const DESCRIBE: &str = r#"{"RequestId":"R-1","TotalCount":1,"PageSize":100,"Instances":{"Instance":[{"InstanceId":"i-a","Status":"Running","RegionId":"cn-hangzhou","OperationLocks":{"LockReason":[]}}]}}"#;
const WRITE: &str = r#"{"RequestId":"R-2"}"#;
const BATCH: &str = r#"{"RequestId":"R-3","InstanceResponses":{"InstanceResponse":[{"InstanceId":"i-a","Code":"200","Message":"success","PreviousStatus":"Stopped","CurrentStatus":"Starting"}]}}"#;
const IDENTITY: &str = r#"{"RequestId":"R-4","AccountId":"1234567890","Arn":"acs:ram::1234567890:user/x","IdentityType":"RAMUser","PrincipalId":"1"}"#;

/// One action's interpretation of an answer, reduced to understood or not.
type Interpret<'a> = &'a dyn Fn(&RawAnswer) -> Result<(), EcsError>;

fn answer(http_status: u16, body: &[u8]) -> RawAnswer {
    RawAnswer {
        http_status,
        headers: reqwest::header::HeaderMap::new(),
        body: body.to_vec(),
    }
}

/// Every action's interpretation of one answer: `Ok` or the error (never a panic).
fn interpret_all(answer: &RawAnswer) -> Vec<Result<(), EcsError>> {
    let redactor = Redactor::new();
    vec![
        interpret_describe(answer, &redactor).map(drop),
        interpret_write(answer, &redactor, false).map(drop),
        interpret_write(answer, &redactor, true).map(drop),
        interpret_batch(answer, &redactor, &["i-a", "i-b"]).map(drop),
        interpret_identity(answer, &redactor).map(drop),
    ]
}

fn is_malformed(result: &Result<(), EcsError>) -> bool {
    matches!(result, Err(e @ EcsError::Malformed { .. })
        if outcome_of(e) == OUTCOME_MALFORMED && e.delivery() == Delivery::Unknown)
}

/// Bytes that are sometimes JSON-looking, sometimes not.
fn bodies() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        "[ -~]{0,200}".prop_map(String::into_bytes),
        proptest::string::string_regex(
            r#"\{("[A-Za-z]{1,12}":("[^"\\]{0,8}"|[0-9]{1,4}|null|\[\]|\{\}),?){0,4}\}?"#
        )
        .unwrap()
        .prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    /// Any 2xx body: each action either understands it or calls it malformed; a 2xx answer is
    /// never turned into an API verdict or an HTTP-status error.
    #[test]
    fn a_2xx_body_is_understood_or_malformed(body in bodies(), status in 200u16..300) {
        for result in interpret_all(&answer(status, &body)) {
            prop_assert!(result.is_ok() || is_malformed(&result), "{result:?}");
        }
    }

    /// Any error status with any body classifies without panicking into one of the error kinds,
    /// and its outcome label is never a success.
    #[test]
    fn an_error_answer_always_classifies(body in bodies(), status in 300u16..600) {
        for result in interpret_all(&answer(status, &body)) {
            match result {
                Ok(()) => {}
                Err(e) => prop_assert_ne!(outcome_of(&e), OUTCOME_SUCCESS),
            }
        }
    }

    /// The signer's input: percent-encoding keeps only `A-Za-z0-9-_.~`, uses uppercase hex, and
    /// decodes back to the original string.
    #[test]
    fn percent_encoding_round_trips(value in any::<String>()) {
        let encoded = percent_encode(&value);
        let mut bytes = encoded.bytes().peekable();
        while let Some(b) = bytes.next() {
            if b == b'%' {
                for _ in 0..2 {
                    let hex = bytes.next().unwrap();
                    prop_assert!(hex.is_ascii_digit() || (b'A'..=b'F').contains(&hex), "{encoded}");
                }
            } else {
                prop_assert!(b.is_ascii_alphanumeric() || b"-_.~".contains(&b), "{encoded}");
            }
        }
        prop_assert_eq!(percent_decode_str(&encoded).decode_utf8().unwrap(), value.as_str());
    }

    /// The canonical query parses back into the same parameters, and signing is deterministic
    /// and depends on the secret.
    #[test]
    fn the_canonical_query_parses_back_and_signing_is_stable(
        params in proptest::collection::btree_map(any::<String>(), any::<String>(), 0..8),
        secret in "[ -~]{1,40}",
    ) {
        let query = canonical_query(&params);
        let parsed: BTreeMap<String, String> = if query.is_empty() {
            BTreeMap::new()
        } else {
            query
                .split('&')
                .map(|pair| {
                    let (name, value) = pair.split_once('=').unwrap();
                    (
                        percent_decode_str(name).decode_utf8().unwrap().into_owned(),
                        percent_decode_str(value).decode_utf8().unwrap().into_owned(),
                    )
                })
                .collect()
        };
        prop_assert_eq!(&parsed, &params);
        let signature = sign("GET", &params, &secret);
        prop_assert_eq!(&signature, &sign("GET", &params, &secret));
        prop_assert_ne!(&signature, &sign("GET", &params, &format!("{secret}x")));
    }
}

/// Every valid answer cut short at every byte is malformed for its action (never a success,
/// never a panic), and the whole answer is understood.
#[test]
fn a_truncated_answer_is_malformed_at_every_cut() {
    let redactor = Redactor::new();
    let cases: [(&str, Interpret); 4] = [
        (DESCRIBE, &|a| interpret_describe(a, &redactor).map(drop)),
        (WRITE, &|a| interpret_write(a, &redactor, false).map(drop)),
        (BATCH, &|a| {
            interpret_batch(a, &redactor, &["i-a"]).map(drop)
        }),
        (IDENTITY, &|a| interpret_identity(a, &redactor).map(drop)),
    ];
    for (body, interpret) in cases {
        assert!(interpret(&answer(200, body.as_bytes())).is_ok(), "{body}");
        for cut in 0..body.len() {
            let result = interpret(&answer(200, &body.as_bytes()[..cut]));
            assert!(is_malformed(&result), "{body} cut at {cut}: {result:?}");
        }
    }
}
