//! Scrubbing of secret values out of text that came back from the network.
//!
//! ECS echoes parts of a request in some error messages (`SignatureDoesNotMatch` quotes the
//! server's string to sign, which holds the `SecurityToken` twice percent-encoded) and proxies may
//! quote the request URL in an error page. Before such text becomes an [`EcsError`](super::EcsError)
//! (and so a log line or `status.lastError`), the client passes it through a [`Redactor`] that
//! knows the sensitive values of that one call, in every encoding they can appear in.

use super::signature::percent_encode;

/// What a redacted value is replaced with.
pub const REDACTED: &str = "<redacted>";

/// Values shorter than this are not scrubbed: they would match ordinary text and cannot be secret.
const MIN_REDACTED_LEN: usize = 4;

/// Replaces known sensitive values (raw, percent-encoded once and twice) with `<redacted>`.
#[derive(Clone, Default)]
pub struct Redactor {
    needles: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("values", &self.needles.len())
            .finish()
    }
}

impl Redactor {
    /// A redactor that knows no value yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `value` (and its percent-encoded forms) to the values to scrub.
    pub fn add(&mut self, value: &str) {
        if value.len() < MIN_REDACTED_LEN {
            return;
        }
        let once = percent_encode(value);
        let twice = percent_encode(&once);
        for needle in [value.to_owned(), once, twice] {
            if !self.needles.contains(&needle) {
                self.needles.push(needle);
            }
        }
        // Longest first, so a value is never half-replaced by a shorter form of itself.
        self.needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
    }

    /// `text` with every known value replaced by `<redacted>`.
    #[must_use]
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for needle in &self.needles {
            if out.contains(needle.as_str()) {
                out = out.replace(needle.as_str(), REDACTED);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_raw_and_encoded_forms() {
        let mut r = Redactor::new();
        r.add("CAIS+sts/token==");
        let text = "raw CAIS+sts/token== once CAIS%2Bsts%2Ftoken%3D%3D twice CAIS%252Bsts%252Ftoken%253D%253D";
        assert_eq!(
            r.redact(text),
            "raw <redacted> once <redacted> twice <redacted>"
        );
    }

    #[test]
    fn leaves_other_text_alone_and_ignores_tiny_values() {
        let mut r = Redactor::new();
        r.add("ab");
        r.add("");
        assert_eq!(r.redact("ab abc"), "ab abc");
        assert!(!format!("{r:?}").contains("ab"));
    }
}
