//! Log capture for the tests that assert no secret ever reaches a log line: a [`Buffer`] any
//! tracing subscriber can write into, and [`capture`], the process-wide subscriber of the
//! harness (trace level for the operator, debug for kube).

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// A shared in-memory log sink.
#[derive(Clone, Default)]
pub struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Buffer {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(
            &self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
        .into_owned()
    }
}

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

static CAPTURED: OnceLock<Buffer> = OnceLock::new();

/// Installs the process-wide capturing subscriber (once per test process).
pub fn capture() {
    CAPTURED.get_or_init(|| {
        let buffer = Buffer::default();
        let filter = EnvFilter::new("ecs_power_operator=trace,kube=debug,kube_runtime=debug,info");
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(buffer.clone())
            .try_init();
        buffer
    });
}

/// Everything the process-wide subscriber logged so far.
pub fn text() -> String {
    CAPTURED.get().map(Buffer::text).unwrap_or_default()
}
