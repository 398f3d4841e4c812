//! RPC signature V1 (`SignatureMethod=HMAC-SHA1`, `SignatureVersion=1.0`),
//! written from the documentation, independently of the operator's signer:
//! `StringToSign = METHOD & pct("/") & pct(sorted "pct(k)=pct(v)" joined by "&")`,
//! `Signature = base64(HMAC-SHA1(secret + "&", StringToSign))`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::percent::encode;

type HmacSha1 = Hmac<Sha1>;

/// The `StringToSign` for these parameters (`Signature` excluded by the caller or skipped here).
/// Parameters are sorted byte-wise by name; empty values stay as `Name=`.
#[must_use]
pub fn string_to_sign<'a>(
    method: &str,
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> String {
    let mut pairs: Vec<(&str, &str)> = params
        .into_iter()
        .filter(|(k, _)| *k != "Signature")
        .collect();
    pairs.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let canonical = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    format!("{method}&{}&{}", encode("/"), encode(&canonical))
}

fn mac(secret: &str) -> HmacSha1 {
    let mut key = Vec::with_capacity(secret.len() + 1);
    key.extend_from_slice(secret.as_bytes());
    key.push(b'&');
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    HmacSha1::new_from_slice(&key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
}

/// `base64(HMAC-SHA1(secret + "&", string_to_sign))`.
#[must_use]
pub fn sign(secret: &str, string_to_sign: &str) -> String {
    let mut m = mac(secret);
    m.update(string_to_sign.as_bytes());
    STANDARD.encode(m.finalize().into_bytes())
}

/// Whether `signature` (base64) is the signature of `string_to_sign`; constant-time compare.
#[must_use]
pub fn verify(secret: &str, string_to_sign: &str, signature: &str) -> bool {
    let Ok(given) = STANDARD.decode(signature.trim()) else {
        return false;
    };
    let mut m = mac(secret);
    m.update(string_to_sign.as_bytes());
    m.verify_slice(&given).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(method: &str, secret: &str, params: &[(&str, &str)], expected: &str) {
        let sts = string_to_sign(method, params.iter().copied());
        assert_eq!(sign(secret, &sts), expected, "StringToSign {sts}");
        assert!(verify(secret, &sts, expected));
        assert!(!verify("wrong", &sts, expected));
    }

    /// The official worked example of the RPC signature documentation.
    #[test]
    fn official_worked_example() {
        let params = [
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("Format", "XML"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Version", "2014-05-26"),
        ];
        assert_eq!(
            string_to_sign("GET", params),
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
        );
        check("GET", "testsecret", &params, "OLeaidS1JvxuMvnyHOwuJ+uX5qY=");
        // The obsolete `TimeStamp` spelling gives the other published value.
        let mut old = params;
        old[6].0 = "TimeStamp";
        check("GET", "testsecret", &old, "CT9X0VtwR86fNWSnsc6v8YGOjuE=");
    }

    fn go_sdk_params() -> Vec<(&'static str, &'static str)> {
        vec![
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
        ]
    }

    /// Published vector: empty values and a space.
    #[test]
    fn go_sdk_vector() {
        let params = go_sdk_params();
        assert_eq!(
            string_to_sign("GET", params.iter().copied()),
            "GET&%2F&AccessKeyId%3DaccessKeyId%26Action%3D%26Format%3DJSON%26RegionId%3DregionId%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3DMOCK_UUID%26SignatureType%3D%26SignatureVersion%3D1.0%26Timestamp%3Dmock%2520date%26Version%3D"
        );
        check(
            "GET",
            "accessKeySecret",
            &params,
            "7loPmFjvDnzOVnQeQNj85S6nFGY=",
        );
    }

    /// Published vector: the STS token is signed.
    #[test]
    fn go_sdk_sts_vector() {
        let mut params = go_sdk_params();
        params.push(("SecurityToken", "accessKeyStsToken"));
        check(
            "GET",
            "accessKeySecret",
            &params,
            "5Nxdcler+ihqWqv0Hr2On4PsBf4=",
        );
    }

    /// Published vector of the OpenAPI utility's tests (`test_get_rpc_signature`).
    #[test]
    fn tea_util_vector() {
        let params = [("query", "test"), ("body", "test")];
        assert_eq!(
            string_to_sign("GET", params),
            "GET&%2F&body%3Dtest%26query%3Dtest"
        );
        check("GET", "secret", &params, "XlUyV4sXjOuX5FnjUz9IF9tm5rU=");
    }

    /// Published vector: UTF-8 and a JSON value (an SMS `SendSms` example).
    #[test]
    fn sms_vector() {
        let params = [
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
        ];
        check("GET", "testSecret", &params, "zJDF+Lrzhj/ThnlvIToysFRq6t4=");
    }

    fn ecs_common() -> Vec<(&'static str, &'static str)> {
        vec![
            ("AccessKeyId", "testid"),
            ("Format", "JSON"),
            ("Version", "2014-05-26"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("SignatureNonce", "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"),
            ("Timestamp", "2024-05-01T08:00:00Z"),
        ]
    }

    /// ECS-shaped requests, signed by the official SDK code.
    #[test]
    fn ecs_shaped_vectors() {
        let mut start = ecs_common();
        start.extend([
            ("Action", "StartInstance"),
            ("InstanceId", "i-bp67acfmxazb4ph00001"),
        ]);
        check("GET", "testsecret", &start, "3VhlmaOjQQOB8oN7NjSO52siViw=");

        let mut batch = ecs_common();
        batch.extend([
            ("Action", "StartInstances"),
            ("RegionId", "cn-hangzhou"),
            ("InstanceId.1", "i-bp67acfmxazb4ph00001"),
            ("InstanceId.2", "i-bp67acfmxazb4ph00002"),
            ("BatchOptimization", "SuccessFirst"),
            ("SecurityToken", "CAIS+sts/token=="),
        ]);
        check("POST", "testsecret", &batch, "z4/IDdD4Z8JJQP37TnuAc6NgW7U=");

        let mut describe = ecs_common();
        describe.extend([
            ("Action", "DescribeInstances"),
            ("RegionId", "cn-hangzhou"),
            (
                "InstanceIds",
                r#"["i-bp67acfmxazb4ph00001","i-bp67acfmxazb4ph00002"]"#,
            ),
            ("MaxResults", "100"),
        ]);
        check(
            "GET",
            "testsecret",
            &describe,
            "Rx8TWeoXx7Rhf48rznMG0XmfiYU=",
        );
    }

    #[test]
    fn signature_parameter_is_not_signed_and_order_is_bytewise() {
        let a = string_to_sign(
            "GET",
            [
                ("b", "1"),
                ("Signature", "x"),
                ("InstanceId.10", "y"),
                ("InstanceId.2", "z"),
            ],
        );
        assert_eq!(a, "GET&%2F&InstanceId.10%3Dy%26InstanceId.2%3Dz%26b%3D1");
    }

    #[test]
    fn garbage_signatures_do_not_verify() {
        assert!(!verify("s", "sts", "not base64!"));
        assert!(!verify("s", "sts", ""));
    }
}
