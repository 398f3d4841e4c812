//! Signature V3 (`ACS3-HMAC-SHA256`), written from the documentation:
//! `CanonicalRequest = METHOD\nURI\nCanonicalQuery\nCanonicalHeaders\nSignedHeaders\nHashedPayload`,
//! `StringToSign = "ACS3-HMAC-SHA256\n" + hex(SHA256(CanonicalRequest))`,
//! `Signature = hex(HMAC-SHA256(secret, StringToSign))`, carried in
//! `Authorization: ACS3-HMAC-SHA256 Credential=<AK>,SignedHeaders=<a;b>,Signature=<hex>`.

use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::{Digest, Sha256};

use super::percent::encode;

type HmacSha256 = Hmac<Sha256>;

/// The algorithm name this verifier supports.
pub const ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// The parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// e.g. `ACS3-HMAC-SHA256`.
    pub algorithm: String,
    /// The access key id (`Credential=`).
    pub credential: String,
    /// Lowercase header names, in the order given.
    pub signed_headers: Vec<String>,
    /// Hex signature.
    pub signature: String,
}

impl Authorization {
    /// Parses `ALG Credential=…,SignedHeaders=…,Signature=…`.
    ///
    /// # Errors
    /// A message naming the missing or malformed part.
    pub fn parse(header: &str) -> Result<Self, String> {
        let (algorithm, rest) = header
            .trim()
            .split_once(' ')
            .ok_or_else(|| "Authorization has no credential part".to_owned())?;
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let (k, v) = part
                .trim()
                .split_once('=')
                .ok_or_else(|| format!("Authorization part {part:?} is not key=value"))?;
            match k.trim() {
                "Credential" => credential = Some(v.trim().to_owned()),
                "SignedHeaders" => signed = Some(v.trim().to_owned()),
                "Signature" => signature = Some(v.trim().to_owned()),
                other => return Err(format!("Authorization has an unknown part {other:?}")),
            }
        }
        let credential = credential
            .filter(|c| !c.is_empty())
            .ok_or_else(|| "Authorization has no Credential".to_owned())?;
        let signed = signed.ok_or_else(|| "Authorization has no SignedHeaders".to_owned())?;
        let signature = signature
            .filter(|s| !s.is_empty())
            .ok_or_else(|| "Authorization has no Signature".to_owned())?;
        Ok(Self {
            algorithm: algorithm.to_owned(),
            credential,
            signed_headers: signed
                .split(';')
                .filter(|h| !h.is_empty())
                .map(str::to_ascii_lowercase)
                .collect(),
            signature,
        })
    }
}

/// Sorted `pct(name)=pct(value)` pairs joined by `&`.
#[must_use]
pub fn canonical_query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut pairs: Vec<(&str, &str)> = pairs.into_iter().collect();
    pairs.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `name:value\n` for each signed header (sorted, lowercase; repeated values trimmed, sorted
/// and joined by `,`), and the `;`-joined `SignedHeaders`.
#[must_use]
pub fn canonical_headers(headers: &HeaderMap, signed: &[String]) -> (String, String) {
    let mut names: Vec<&str> = signed.iter().map(String::as_str).collect();
    names.sort_unstable();
    names.dedup();
    let mut out = String::new();
    for name in &names {
        let mut values: Vec<String> = headers
            .get_all(*name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned())
            .collect();
        values.sort();
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    (out, names.join(";"))
}

/// The canonical request.
#[must_use]
pub fn canonical_request(
    method: &str,
    path: &str,
    canonical_query: &str,
    canonical_headers: &str,
    signed_headers: &str,
    payload_hash: &str,
) -> String {
    let uri = if path.is_empty() { "/" } else { path };
    format!(
        "{method}\n{uri}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{payload_hash}"
    )
}

/// Hex SHA-256.
#[must_use]
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// `ACS3-HMAC-SHA256\n` + hex(SHA-256(canonical request)).
#[must_use]
pub fn string_to_sign(canonical_request: &str) -> String {
    format!("{ALGORITHM}\n{}", sha256_hex(canonical_request.as_bytes()))
}

fn mac(secret: &str) -> HmacSha256 {
    HmacSha256::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
}

/// Hex HMAC-SHA256 of the `StringToSign` with the secret as key.
#[must_use]
pub fn sign(secret: &str, string_to_sign: &str) -> String {
    let mut m = mac(secret);
    m.update(string_to_sign.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

/// Constant-time check of a hex signature.
#[must_use]
pub fn verify(secret: &str, string_to_sign: &str, signature: &str) -> bool {
    let Ok(given) = hex::decode(signature.trim()) else {
        return false;
    };
    let mut m = mac(secret);
    m.update(string_to_sign.as_bytes());
    m.verify_slice(&given).is_ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use http::HeaderValue;

    use super::*;

    /// The V3 signature documentation's known answer (`RunInstances` on ecs.cn-shanghai).
    #[test]
    fn documented_known_answer() {
        let mut headers = HeaderMap::new();
        for (k, v) in [
            ("host", "ecs.cn-shanghai.aliyuncs.com"),
            ("x-acs-action", "RunInstances"),
            (
                "x-acs-content-sha256",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
            ("x-acs-date", "2023-10-26T09:01:01Z"),
            ("x-acs-signature-nonce", "d410180a5abf7fe235dd9b74aca91fc0"),
            ("x-acs-version", "2014-05-26"),
        ] {
            headers.insert(k, HeaderValue::from_static(v));
        }
        headers.insert("user-agent", HeaderValue::from_static("not signed"));
        let signed: Vec<String> = [
            "host",
            "x-acs-action",
            "x-acs-content-sha256",
            "x-acs-date",
            "x-acs-signature-nonce",
            "x-acs-version",
        ]
        .map(str::to_owned)
        .to_vec();
        let (ch, sh) = canonical_headers(&headers, &signed);
        let query = canonical_query([
            ("RegionId", "cn-shanghai"),
            (
                "ImageId",
                "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd",
            ),
        ]);
        let cr = canonical_request("POST", "/", &query, &ch, &sh, &sha256_hex(b""));
        assert_eq!(
            sha256_hex(cr.as_bytes()),
            "29622f5feb1e9fcaaa2e276a72889c975f7b16f00e02be1ca34965b18cd85015"
        );
        let sts = string_to_sign(&cr);
        let expected = "e521358f7776c97df52e6b2891a8bc73026794a071b50c3323388c4e0df64804";
        assert_eq!(sign("YourAccessKeySecret", &sts), expected);
        assert!(verify("YourAccessKeySecret", &sts, expected));
        assert!(!verify("other", &sts, expected));
        assert!(!verify("YourAccessKeySecret", &sts, "zz"));
    }

    #[test]
    fn empty_payload_hash() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn parses_authorization() {
        let a = Authorization::parse(
            "ACS3-HMAC-SHA256 Credential=AK1,SignedHeaders=host;X-Acs-Date,Signature=abcd",
        )
        .unwrap();
        assert_eq!(a.algorithm, "ACS3-HMAC-SHA256");
        assert_eq!(a.credential, "AK1");
        assert_eq!(a.signed_headers, ["host", "x-acs-date"]);
        assert_eq!(a.signature, "abcd");
        for bad in [
            "ACS3-HMAC-SHA256",
            "ACS3-HMAC-SHA256 Credential=AK1",
            "ACS3-HMAC-SHA256 Credential=,SignedHeaders=host,Signature=ab",
            "ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=host,Signature=ab,Extra=1",
            "ACS3-HMAC-SHA256 garbage",
        ] {
            assert!(Authorization::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn repeated_header_values_are_sorted_and_joined() {
        let mut headers = HeaderMap::new();
        headers.append("x-acs-b", HeaderValue::from_static(" 2 "));
        headers.append("x-acs-b", HeaderValue::from_static("1"));
        headers.insert("x-acs-a", HeaderValue::from_static("a"));
        let (ch, sh) = canonical_headers(&headers, &["x-acs-b".to_owned(), "x-acs-a".to_owned()]);
        assert_eq!(ch, "x-acs-a:a\nx-acs-b:1,2\n");
        assert_eq!(sh, "x-acs-a;x-acs-b");
    }
}
