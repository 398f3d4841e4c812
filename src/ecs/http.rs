//! HTTP plumbing shared by the ECS client ([`super::client`]) and the RRSA STS exchange
//! ([`super::rrsa`]): one way to build the reqwest client, to read an answer body within a size
//! cap, and to describe an error by its chain of sources.

use std::error::Error;
use std::time::Duration;

/// The reqwest client both use: rustls with the `ring` provider (reqwest is built with
/// `rustls-no-provider`; the provider is installed as the process default when none is yet),
/// connect and whole-request timeouts, no redirects, our user agent.
pub(crate) fn client(
    connect_timeout: Duration,
    request_timeout: Duration,
) -> reqwest::Result<reqwest::Client> {
    // Fails only when a provider is already installed, which is what we want either way.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .timeout(request_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("ecs-power-operator/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Appends the texts of `source` and its own sources to `parts`, skipping empty ones and one that
/// repeats the text before it (wrapping errors often do).
pub(crate) fn push_sources(parts: &mut Vec<String>, mut source: Option<&dyn Error>) {
    while let Some(current) = source {
        let text = current.to_string();
        if !text.is_empty() && parts.last() != Some(&text) {
            parts.push(text);
        }
        source = current.source();
    }
}

/// `err` and its sources as one line, `a: b: c`. The caller removes what must not be shown
/// (reqwest's `without_url`, redaction) first.
pub(crate) fn error_chain(err: &dyn Error) -> String {
    let mut parts = vec![err.to_string()];
    push_sources(&mut parts, err.source());
    parts.join(": ")
}

/// Why [`read_capped`] gave up.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// The body is (or announces to be) larger than the cap.
    TooLarge,
    /// Reading failed after `read` bytes.
    CutShort {
        /// Bytes read before the failure.
        read: usize,
        /// The failure.
        error: reqwest::Error,
    },
}

/// Reads the body chunk by chunk, refusing more than `max` bytes, so a huge or endless body
/// cannot exhaust memory.
pub(crate) async fn read_capped(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, BodyError> {
    if response
        .content_length()
        .is_some_and(|len| len > max as u64)
    {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > max {
                    return Err(BodyError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(error) => {
                return Err(BodyError::CutShort {
                    read: body.len(),
                    error,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Layer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|l| l as &(dyn Error + 'static))
        }
    }

    #[test]
    fn chains_skip_empty_and_repeated_texts() {
        let err = Layer(
            "send failed",
            Some(Box::new(Layer(
                "",
                Some(Box::new(Layer(
                    "refused",
                    Some(Box::new(Layer("refused", None))),
                ))),
            ))),
        );
        assert_eq!(error_chain(&err), "send failed: refused");
    }
}
