//! WATCH: a stream of JSON lines `{"type":…,"object":…}`. Starts with synthetic ADDED events
//! (resourceVersion unset or "0", or `sendInitialEvents=true`, which ends them with a BOOKMARK
//! annotated `k8s.io/initial-events-end: "true"`), or resumes after a given resourceVersion from
//! the history (too old: an ERROR event with a 410 Expired Status). Then live changes, filtered by
//! namespace and selectors (an object leaving the selection is DELETED, entering it ADDED),
//! periodic BOOKMARKs when allowed, Table objects when asked. Ends at `timeoutSeconds`, on
//! shutdown, when the watch lags behind the broadcast, or when an admin breaks all watches.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::api_error::ApiError;
use crate::field_error::FieldError;
use crate::object;
use crate::resource::ResourceType;
use crate::rest::{ListOptions, TableRequest, Target};
use crate::store::{Change, ChangeKind, Store};
use crate::table;

/// Server-wide watch settings.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// How often an idle watch that allows bookmarks gets one.
    pub bookmark_interval: Duration,
    /// Longest watch (and the length of one without `timeoutSeconds`).
    pub max_timeout: Duration,
}

/// One encoded event line.
fn line(event_type: &str, object: &Value) -> Bytes {
    let mut buf = Vec::with_capacity(256);
    buf.extend_from_slice(b"{\"type\":\"");
    buf.extend_from_slice(event_type.as_bytes());
    buf.extend_from_slice(b"\",\"object\":");
    if serde_json::to_writer(&mut buf, object).is_err() {
        buf.extend_from_slice(b"null");
    }
    buf.extend_from_slice(b"}\n");
    Bytes::from(buf)
}

struct Filter {
    rt: Arc<ResourceType>,
    namespace: Option<String>,
    opts: ListOptions,
    table: Option<TableRequest>,
    columns_sent: bool,
}

impl Filter {
    fn matches(&self, stored: &Value) -> bool {
        if let Some(ns) = &self.namespace
            && object::namespace(stored) != ns
        {
            return false;
        }
        self.opts.selectors.is_empty() || self.opts.selectors.matches(&self.rt.to_view(stored))
    }

    fn encode(&mut self, event_type: &str, stored: &Value) -> Bytes {
        let view = self.rt.to_view(stored);
        match self.table {
            None => line(event_type, &view),
            Some(tr) => {
                let row = table::row(&self.rt, stored, &view, tr.include);
                let meta = json!({"resourceVersion": object::resource_version(stored)});
                let t = table::table(&self.rt, &[row], &meta, !self.columns_sent);
                self.columns_sent = true;
                line(event_type, &t)
            }
        }
    }

    /// The event this watcher sees for a change, if any.
    fn translate(&mut self, change: &Change) -> Option<Bytes> {
        let now = self.matches(&change.object);
        match change.kind {
            ChangeKind::Added if now => Some(self.encode("ADDED", &change.object)),
            ChangeKind::Deleted if now => Some(self.encode("DELETED", &change.object)),
            ChangeKind::Modified => {
                let before = change.previous.as_deref().is_some_and(|p| self.matches(p));
                match (before, now) {
                    (true, true) => Some(self.encode("MODIFIED", &change.object)),
                    (false, true) => Some(self.encode("ADDED", &change.object)),
                    (true, false) => Some(self.encode("DELETED", &change.object)),
                    (false, false) => None,
                }
            }
            _ => None,
        }
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        line(
            "BOOKMARK",
            &json!({"kind": self.rt.kind, "apiVersion": self.rt.api_version, "metadata": meta}),
        )
    }
}

fn error_line(e: &ApiError) -> Bytes {
    line("ERROR", &e.to_status())
}

/// Checks watch parameters (422 like the API server).
fn validate(opts: &ListOptions) -> Result<(), ApiError> {
    let invalid = |field: &str, detail: &str| {
        ApiError::invalid(
            "meta.k8s.io",
            "ListOptions",
            "",
            vec![FieldError::forbidden(field, detail.to_string())],
        )
    };
    match (
        opts.send_initial_events,
        opts.resource_version_match.as_deref(),
    ) {
        (Some(true), Some("NotOlderThan")) => Ok(()),
        (Some(true), _) => Err(invalid(
            "resourceVersionMatch",
            "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
        )),
        (_, Some(m)) if !m.is_empty() && opts.send_initial_events.is_none() => Err(invalid(
            "resourceVersionMatch",
            "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
        )),
        _ => Ok(()),
    }
}

/// Starts a watch; the returned receiver yields the response body chunks.
///
/// # Errors
///
/// 422 for an invalid combination of `sendInitialEvents` and `resourceVersionMatch`, 400 for
/// a malformed `resourceVersion`.
pub fn watch(
    store: &Arc<Store>,
    t: &Target,
    opts: ListOptions,
    tbl: Option<TableRequest>,
    cfg: &WatchConfig,
    shutdown: CancellationToken,
) -> Result<mpsc::Receiver<Bytes>, ApiError> {
    validate(&opts)?;
    let rv_param = opts.resource_version.clone().unwrap_or_default();
    let asked = if rv_param.is_empty() {
        None
    } else {
        Some(rv_param.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("invalid resource version: {rv_param:?}"))
        })?)
    };
    let send_initial = opts
        .send_initial_events
        .unwrap_or(matches!(asked, None | Some(0)));
    let streaming_list = opts.send_initial_events == Some(true);
    let allow_bookmarks = opts.allow_bookmarks;
    let mut filter = Filter {
        rt: t.rt.clone(),
        namespace: t.namespace.clone(),
        opts,
        table: tbl,
        columns_sent: false,
    };
    let breaker = store.watch_breaker();
    let mut initial: Vec<Bytes> = Vec::new();
    let mut fatal = false;
    let storage = filter.rt.storage.clone();
    let namespace = filter.namespace.clone();
    let (rx, start_rv) = {
        let st = store.read();
        let rx = st.subscribe();
        let current = st.rv();
        if send_initial {
            for (_, e) in st.range(&storage, namespace.as_deref(), None) {
                if filter.matches(&e.object) {
                    initial.push(filter.encode("ADDED", &e.object));
                }
            }
            if streaming_list && allow_bookmarks {
                initial.push(filter.bookmark(current, true));
            }
        } else {
            let n = asked.unwrap_or(current);
            if n > current {
                initial.push(error_line(&ApiError::too_large_resource_version(
                    n, current,
                )));
                fatal = true;
            } else {
                match st.changes_since(n) {
                    None => {
                        initial.push(error_line(&ApiError::expired(format!(
                            "too old resource version: {n} ({})",
                            st.floor()
                        ))));
                        fatal = true;
                    }
                    Some(changes) => {
                        for c in changes.filter(|c| c.storage == storage) {
                            initial.extend(filter.translate(c));
                        }
                    }
                }
            }
        }
        (rx, current)
    };
    let timeout = filter
        .opts
        .timeout_seconds
        .map_or(cfg.max_timeout, Duration::from_secs)
        .min(cfg.max_timeout);
    let bookmark_interval = cfg.bookmark_interval;
    let (tx, body) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        for chunk in initial {
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
        if fatal {
            return;
        }
        run(
            tx,
            rx,
            filter,
            start_rv,
            timeout,
            bookmark_interval,
            allow_bookmarks,
            shutdown,
            breaker,
        )
        .await;
    });
    Ok(body)
}

#[allow(clippy::too_many_arguments)]
async fn run(
    tx: mpsc::Sender<Bytes>,
    mut rx: broadcast::Receiver<Arc<Change>>,
    mut filter: Filter,
    mut last_seen: u64,
    timeout: Duration,
    bookmark_interval: Duration,
    allow_bookmarks: bool,
    shutdown: CancellationToken,
    breaker: CancellationToken,
) {
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + bookmark_interval,
        bookmark_interval,
    );
    loop {
        let chunk = tokio::select! {
            () = shutdown.cancelled() => return,
            () = breaker.cancelled() => return,
            () = &mut deadline => return,
            () = tx.closed() => return,
            _ = ticker.tick(), if allow_bookmarks => filter.bookmark(last_seen, false),
            r = rx.recv() => match r {
                Ok(change) => {
                    last_seen = last_seen.max(change.rv);
                    if change.storage != filter.rt.storage {
                        continue;
                    }
                    if change.kind == ChangeKind::ResourceRemoved {
                        return;
                    }
                    match filter.translate(&change) {
                        Some(c) => c,
                        None => continue,
                    }
                }
                // Lagging (a slow client) ends the watch; the client resumes from its last version.
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(skipped = n, "watch fell behind; closing it");
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        if tx.send(chunk).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_rules() {
        let mut o = ListOptions {
            send_initial_events: Some(true),
            ..ListOptions::default()
        };
        assert_eq!(validate(&o).expect_err("needs match").code(), 422);
        o.resource_version_match = Some("NotOlderThan".into());
        assert!(validate(&o).is_ok());
        let o = ListOptions {
            resource_version_match: Some("Exact".into()),
            ..ListOptions::default()
        };
        assert!(validate(&o).is_err());
        assert!(validate(&ListOptions::default()).is_ok());
    }

    #[test]
    fn lines() {
        let l = line("ADDED", &json!({"a": 1}));
        assert_eq!(&l[..], b"{\"type\":\"ADDED\",\"object\":{\"a\":1}}\n");
    }
}
