//! `percentEncode` of the ECS signature algorithms: UTF-8 bytes, unreserved
//! `A–Z a–z 0–9 - _ . ~` kept, every other byte `%XY` in uppercase hex (space → `%20`,
//! `*` → `%2A`, `~` kept). Used by both verifiers to rebuild canonical strings.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

const UNRESERVED_KEPT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes `s` the way ECS signs it.
#[must_use]
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED_KEPT).to_string()
}

#[cfg(test)]
mod tests {
    use super::encode;

    #[test]
    fn matches_the_verified_table() {
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
            ("AZaz09-_.", "AZaz09-_."),
        ];
        for (raw, encoded) in table {
            assert_eq!(encode(raw), encoded, "{raw:?}");
        }
    }
}
