//! Logging: `tracing` events to stderr as text (people) or JSON lines (log pipelines), levels from
//! `RUST_LOG` (default `info`). Secrets never reach a log line: credentials are `SecretString`s
//! with a redacted `Debug`, and the ECS client logs neither signed URLs nor request bodies.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::{SubscriberInitExt, TryInitError};
use tracing_subscriber::{EnvFilter, fmt};

use crate::cli::LogFormat;

/// The filter used when `RUST_LOG` is unset or invalid.
pub const DEFAULT_FILTER: &str = "info";

/// Installs the global subscriber.
///
/// # Errors
/// When a global subscriber is already installed.
pub fn init(format: LogFormat) -> Result<(), TryInitError> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    }
}
