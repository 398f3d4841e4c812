//! RPC signature V1 (`HMAC-SHA1`, `SignatureVersion=1.0`) for the ECS OpenAPI, written by hand.
//!
//! This is the lowest layer of the ECS side of the pipeline: the [`client`](super::client) builds
//! the parameter map of one call, asks [`sign`] for the `Signature` and sends everything
//! percent-encoded with [`percent_encode`]. The algorithm, as Alibaba Cloud documents it and its SDKs implement it:
//!
//! 1. parameters (without `Signature`) sorted byte-wise by name,
//! 2. `CanonicalizedQueryString = pct(name)=pct(value)` joined by `&`,
//! 3. `StringToSign = METHOD & pct("/") & pct(CanonicalizedQueryString)`,
//! 4. `Signature = base64(HMAC-SHA1(key = secret + "&", StringToSign))`.
//!
//! The parameter map is a [`BTreeMap<String, String>`]: `String`'s ordering is byte-wise, which is
//! exactly the order the algorithm asks for, and names are unique as in every RPC call.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac as _};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha1::Sha1;

/// Bytes left as they are: `A-Z a-z 0-9 - _ . ~`; everything else becomes `%XY`.
const RPC_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes `value` the way the ECS RPC signature expects (UTF-8 bytes; only `A-Za-z0-9-_.~` kept; `%XY` uppercase; space is `%20`, never `+`).
///
/// UTF-8 bytes; `A-Z a-z 0-9 - _ . ~` stay, every other byte becomes `%XY` with uppercase hex.
/// A space is `%20` (never `+`), `*` is `%2A`, `~` stays `~`.
#[must_use]
pub fn percent_encode(value: &str) -> String {
    utf8_percent_encode(value, RPC_ENCODE_SET).to_string()
}

/// The canonicalized query string: `pct(name)=pct(value)` joined by `&`, in byte-wise name order.
///
/// It is also the query string the client sends (followed by the `Signature`).
#[must_use]
pub fn canonical_query(params: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (name, value) in params {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&percent_encode(name));
        out.push('=');
        out.push_str(&percent_encode(value));
    }
    out
}

/// The string to sign for an RPC call sent with HTTP `method` (`"GET"` or `"POST"`).
///
/// `params` must not contain `Signature`; if it does, it is left out, as the algorithm says.
#[must_use]
pub fn string_to_sign(method: &str, params: &BTreeMap<String, String>) -> String {
    let query = if params.contains_key("Signature") {
        let mut without = params.clone();
        without.remove("Signature");
        canonical_query(&without)
    } else {
        canonical_query(params)
    };
    format!(
        "{method}&{}&{}",
        percent_encode("/"),
        percent_encode(&query)
    )
}

/// The `Signature` value (standard base64 with padding, not yet percent-encoded) of an RPC call.
///
/// The HMAC-SHA1 key is `access_key_secret + "&"`.
#[must_use]
pub fn sign(method: &str, params: &BTreeMap<String, String>, access_key_secret: &str) -> String {
    let key = format!("{access_key_secret}&");
    hmac_sha1_base64(key.as_bytes(), string_to_sign(method, params).as_bytes())
}

/// `base64(HMAC-SHA1(key, message))` with the key used verbatim.
///
/// # Panics
///
/// Never: HMAC accepts keys of any length.
#[must_use]
pub fn hmac_sha1_base64(key: &[u8], message: &[u8]) -> String {
    // HMAC is defined for keys of any length (long keys are hashed first), so the `hmac` crate's
    // `new_from_slice` has no failing path for it; this cannot be reached by any input.
    #[allow(clippy::expect_used)]
    let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(message);
    BASE64.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// The encoding table verified against the official SDKs, entry by entry.
    #[test]
    fn percent_encoding_table() {
        let table = [
            (" ", "%20"),
            ("+", "%2B"),
            ("*", "%2A"),
            ("~", "~"),
            ("/", "%2F"),
            (":", "%3A"),
            ("=", "%3D"),
            ("&", "%26"),
            ("\"", "%22"),
            ("'", "%27"),
            ("!", "%21"),
            ("(", "%28"),
            (")", "%29"),
            ("派", "%E6%B4%BE"),
            (r#"["i-1","i-2"]"#, "%5B%22i-1%22%2C%22i-2%22%5D"),
        ];
        for (input, expected) in table {
            assert_eq!(percent_encode(input), expected, "encoding {input:?}");
        }
    }

    #[test]
    fn unreserved_characters_are_kept_and_hex_is_uppercase() {
        let unreserved = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~";
        assert_eq!(percent_encode(unreserved), unreserved);
        assert_eq!(percent_encode("\u{ff}"), "%C3%BF");
        assert_eq!(percent_encode("a\nb%"), "a%0Ab%25");
        assert_eq!(percent_encode(""), "");
    }

    #[test]
    fn names_sort_byte_wise() {
        let p = params(&[
            ("Timestamp", "b"),
            ("TimeStamp", "a"),
            ("InstanceId.2", "z"),
            ("InstanceId.10", "y"),
            ("InstanceId.1", "x"),
        ]);
        assert_eq!(
            canonical_query(&p),
            "InstanceId.1=x&InstanceId.10=y&InstanceId.2=z&TimeStamp=a&Timestamp=b"
        );
    }

    /// The official worked example of Alibaba Cloud's signature documentation (GET,
    /// `DescribeRegions`).
    #[test]
    fn official_worked_example() {
        let p = params(&[
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("Format", "XML"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Version", "2014-05-26"),
        ]);
        assert_eq!(
            string_to_sign("GET", &p),
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
        );
        let signature = sign("GET", &p, "testsecret");
        assert_eq!(signature, "OLeaidS1JvxuMvnyHOwuJ+uX5qY=");
        assert_eq!(
            percent_encode(&signature),
            "OLeaidS1JvxuMvnyHOwuJ%2BuX5qY%3D"
        );
        assert_eq!(
            format!(
                "{}&Signature={}",
                canonical_query(&p),
                percent_encode(&signature)
            ),
            "AccessKeyId=testid&Action=DescribeRegions&Format=XML&SignatureMethod=HMAC-SHA1&SignatureNonce=3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf&SignatureVersion=1.0&Timestamp=2016-02-23T12%3A46%3A24Z&Version=2014-05-26&Signature=OLeaidS1JvxuMvnyHOwuJ%2BuX5qY%3D"
        );
    }

    /// The obsolete `TimeStamp` spelling of older documentation gives the older published value.
    #[test]
    fn official_example_with_obsolete_timestamp_key() {
        let p = params(&[
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("Format", "XML"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("SignatureVersion", "1.0"),
            ("TimeStamp", "2016-02-23T12:46:24Z"),
            ("Version", "2014-05-26"),
        ]);
        assert_eq!(
            sign("GET", &p, "testsecret"),
            "CT9X0VtwR86fNWSnsc6v8YGOjuE="
        );
    }

    fn go_sdk_params() -> BTreeMap<String, String> {
        params(&[
            ("AccessKeyId", "accessKeyId"),
            ("Action", ""),
            ("Format", "JSON"),
            ("RegionId", "regionId"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "MOCK_UUID"),
            ("SignatureType", ""),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "mock date"),
            ("Version", ""),
        ])
    }

    /// The Go SDK's RPC signature composer test (empty values, a space).
    #[test]
    fn vector_a_go_sdk() {
        let p = go_sdk_params();
        assert_eq!(
            string_to_sign("GET", &p),
            "GET&%2F&AccessKeyId%3DaccessKeyId%26Action%3D%26Format%3DJSON%26RegionId%3DregionId%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3DMOCK_UUID%26SignatureType%3D%26SignatureVersion%3D1.0%26Timestamp%3Dmock%2520date%26Version%3D"
        );
        assert_eq!(
            sign("GET", &p, "accessKeySecret"),
            "7loPmFjvDnzOVnQeQNj85S6nFGY="
        );
    }

    /// The same plus a security token, which is signed like any parameter.
    #[test]
    fn vector_b_go_sdk_sts() {
        let mut p = go_sdk_params();
        p.insert("SecurityToken".into(), "accessKeyStsToken".into());
        assert_eq!(
            sign("GET", &p, "accessKeySecret"),
            "5Nxdcler+ihqWqv0Hr2On4PsBf4="
        );
    }

    /// The darabonba-openapi-util RPC signature test.
    #[test]
    fn vector_c_openapi_util() {
        let p = params(&[("query", "test"), ("body", "test")]);
        assert_eq!(
            string_to_sign("GET", &p),
            "GET&%2F&body%3Dtest%26query%3Dtest"
        );
        assert_eq!(sign("GET", &p, "secret"), "XlUyV4sXjOuX5FnjUz9IF9tm5rU=");
    }

    /// The SMS `SendSms` example, with UTF-8 and a JSON value.
    #[test]
    fn vector_d_sms_utf8_and_json() {
        let p = params(&[
            ("AccessKeyId", "testId"),
            ("Action", "SendSms"),
            ("Format", "XML"),
            ("OutId", "123"),
            ("PhoneNumbers", "15300000001"),
            ("RegionId", "cn-hangzhou"),
            ("SignName", "阿里云短信测试专用"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "45e25e9b-0a6f-4070-8c85-2956eda1b466"),
            ("SignatureVersion", "1.0"),
            ("TemplateCode", "SMS_71390007"),
            ("TemplateParam", r#"{"customer":"test"}"#),
            ("Timestamp", "2017-07-12T02:42:19Z"),
            ("Version", "2017-05-25"),
        ]);
        assert_eq!(
            sign("GET", &p, "testSecret"),
            "zJDF+Lrzhj/ThnlvIToysFRq6t4="
        );
    }

    /// Raw HMAC-SHA1/base64 primitives of the Python and Go SDK tests (key used verbatim).
    #[test]
    fn vector_e_raw_hmac() {
        assert_eq!(
            hmac_sha1_base64(b"secret", b"source"),
            "Jv4yi8SobFhg5t1C7nWLbhBSFZQ="
        );
        assert_eq!(
            hmac_sha1_base64(b"secret", "中文unicode".as_bytes()),
            "szlfHs3WVaO/HgY3Cg7/uyXDaRw="
        );
        assert_eq!(
            hmac_sha1_base64(b"accessKeySecretsuffix", b"string to sign"),
            "Dqy7QZhP4TyQUDa3SBSFXopJaIo="
        );
    }

    fn ecs_common(action: &str) -> BTreeMap<String, String> {
        params(&[
            ("AccessKeyId", "testid"),
            ("Action", action),
            ("Format", "JSON"),
            ("Version", "2014-05-26"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("SignatureNonce", "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"),
            ("Timestamp", "2024-05-01T08:00:00Z"),
        ])
    }

    /// ECS-shaped vector generated with the official SDK code: GET `StartInstance`.
    #[test]
    fn vector_f_start_instance_get() {
        let mut p = ecs_common("StartInstance");
        p.insert("InstanceId".into(), "i-bp67acfmxazb4ph00001".into());
        assert_eq!(
            sign("GET", &p, "testsecret"),
            "3VhlmaOjQQOB8oN7NjSO52siViw="
        );
    }

    /// ECS-shaped vector generated with the official SDK code: POST `StartInstances` with a
    /// security token.
    #[test]
    fn vector_f_start_instances_post_with_token() {
        let mut p = ecs_common("StartInstances");
        p.insert("RegionId".into(), "cn-hangzhou".into());
        p.insert("InstanceId.1".into(), "i-bp67acfmxazb4ph00001".into());
        p.insert("InstanceId.2".into(), "i-bp67acfmxazb4ph00002".into());
        p.insert("BatchOptimization".into(), "SuccessFirst".into());
        p.insert("SecurityToken".into(), "CAIS+sts/token==".into());
        assert_eq!(
            sign("POST", &p, "testsecret"),
            "z4/IDdD4Z8JJQP37TnuAc6NgW7U="
        );
        // The method is part of what is signed.
        assert_ne!(
            sign("GET", &p, "testsecret"),
            "z4/IDdD4Z8JJQP37TnuAc6NgW7U="
        );
    }

    /// ECS-shaped vector generated with the official SDK code: GET `DescribeInstances` with a JSON
    /// array of ids.
    #[test]
    fn vector_f_describe_instances_get() {
        let mut p = ecs_common("DescribeInstances");
        p.insert("RegionId".into(), "cn-hangzhou".into());
        p.insert(
            "InstanceIds".into(),
            r#"["i-bp67acfmxazb4ph00001","i-bp67acfmxazb4ph00002"]"#.into(),
        );
        p.insert("MaxResults".into(), "100".into());
        assert_eq!(
            sign("GET", &p, "testsecret"),
            "Rx8TWeoXx7Rhf48rznMG0XmfiYU="
        );
    }

    #[test]
    fn signature_parameter_is_not_signed() {
        let mut p = ecs_common("StartInstance");
        p.insert("InstanceId".into(), "i-bp67acfmxazb4ph00001".into());
        let expected = sign("GET", &p, "testsecret");
        p.insert("Signature".into(), "anything".into());
        assert_eq!(sign("GET", &p, "testsecret"), expected);
    }

    #[test]
    fn wrong_secret_gives_another_signature() {
        let p = ecs_common("StartInstance");
        assert_ne!(
            sign("POST", &p, "testsecret"),
            sign("POST", &p, "testsecreT")
        );
    }
}
