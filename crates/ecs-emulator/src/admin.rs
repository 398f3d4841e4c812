//! The admin API under `/_emulator/` (JSON; same field names as the state file), used by tests,
//! the sandbox and users to seed instances, change them, script faults, read the call log,
//! change settings and reset. It never shows a secret. Admin calls are not in the call log.
//!
//! | method and path | does |
//! |---|---|
//! | `GET /_emulator/healthz` | `ok` |
//! | `GET /_emulator/instances` | every instance as it is now |
//! | `POST /_emulator/instances` | upsert one instance or a list |
//! | `GET/PUT/PATCH/DELETE /_emulator/instances/{id}` | read, replace, change fields, remove |
//! | `GET/POST/DELETE /_emulator/faults` | list, add one or a list, clear all |
//! | `DELETE /_emulator/faults/{id}` | remove one |
//! | `GET /_emulator/calls?since=&action=&instance=` | call log; `DELETE` empties it |
//! | `GET/PATCH /_emulator/settings` | transitionDelay, defaultStoppedMode, qps (per key), rateLimits (per account, region and action; replaced whole, buckets and minute windows restart) |
//! | `POST /_emulator/access-keys` | accept another key (`{id, secret, securityToken?, accountId?, userName?}`) |
//! | `POST /_emulator/reset` | back to the starting configuration |

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::call_log::CallRecord;
use crate::config::duration;
use crate::credentials::AccessKey;
use crate::emulator::{EmulatorError, Shared, lock};
use crate::faults::Fault;
use crate::state::{Instance, Status, StoppedMode};
use crate::throttle::RateLimits;

/// An admin API failure.
#[derive(Debug, thiserror::Error)]
enum AdminError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
}

impl From<EmulatorError> for AdminError {
    fn from(e: EmulatorError) -> Self {
        match e {
            EmulatorError::NoSuchInstance(_) => Self::NotFound(e.to_string()),
            other => Self::BadRequest(other.to_string()),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let status = match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
        };
        (status, axum::Json(json!({"error": self.to_string()}))).into_response()
    }
}

type AdminResult = Result<Response, AdminError>;

/// One item or a list of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    Many(Vec<T>),
    One(T),
}

impl<T> OneOrMany<T> {
    fn into_vec(self) -> Vec<T> {
        match self {
            Self::Many(v) => v,
            Self::One(t) => vec![t],
        }
    }
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, AdminError> {
    serde_json::from_slice(body)
        .map_err(|e| AdminError::BadRequest(format!("invalid JSON body: {e}")))
}

fn ok_json<T: Serialize>(value: &T) -> AdminResult {
    Ok(axum::Json(value).into_response())
}

/// The `/_emulator/` routes.
pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_emulator/healthz", get(|| async { "ok" }))
        .route(
            "/_emulator/instances",
            get(list_instances).post(upsert_instances),
        )
        .route(
            "/_emulator/instances/{id}",
            get(get_instance)
                .put(put_instance)
                .patch(patch_instance)
                .delete(delete_instance),
        )
        .route(
            "/_emulator/faults",
            get(list_faults).post(add_faults).delete(clear_faults),
        )
        .route("/_emulator/faults/{id}", delete(delete_fault))
        .route("/_emulator/calls", get(list_calls).delete(clear_calls))
        .route(
            "/_emulator/settings",
            get(get_settings).patch(patch_settings),
        )
        .route("/_emulator/access-keys", post(add_access_key))
        .route("/_emulator/reset", post(reset))
}

async fn list_instances(State(s): State<Arc<Shared>>) -> AdminResult {
    ok_json(&s.instances())
}

async fn upsert_instances(State(s): State<Arc<Shared>>, body: Bytes) -> AdminResult {
    let instances = parse::<OneOrMany<Instance>>(&body)?.into_vec();
    for instance in &instances {
        instance.validate().map_err(AdminError::BadRequest)?;
    }
    let ids: Vec<String> = instances.iter().map(|i| i.id.clone()).collect();
    for instance in instances {
        s.upsert_instance(instance)?;
    }
    let current: Vec<Instance> = ids.iter().filter_map(|id| s.instance(id)).collect();
    ok_json(&current)
}

fn existing(s: &Shared, id: &str) -> Result<Instance, AdminError> {
    s.instance(id)
        .ok_or_else(|| AdminError::NotFound(format!("instance {id} does not exist")))
}

async fn get_instance(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> AdminResult {
    ok_json(&existing(&s, &id)?)
}

async fn put_instance(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> AdminResult {
    let mut value: Value = parse(&body)?;
    if let Some(map) = value.as_object_mut() {
        match map.get("id") {
            None => {
                map.insert("id".to_owned(), Value::String(id.clone()));
            }
            Some(Value::String(given)) if *given == id => {}
            Some(_) => {
                return Err(AdminError::BadRequest(format!(
                    "body id differs from path id {id}"
                )));
            }
        }
    }
    let instance: Instance = serde_json::from_value(value)
        .map_err(|e| AdminError::BadRequest(format!("invalid instance: {e}")))?;
    s.upsert_instance(instance)?;
    ok_json(&existing(&s, &id)?)
}

async fn patch_instance(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> AdminResult {
    let patch: serde_json::Map<String, Value> = parse(&body)?;
    if patch
        .get("id")
        .is_some_and(|v| v.as_str() != Some(id.as_str()))
    {
        return Err(AdminError::BadRequest(
            "the id cannot be changed".to_owned(),
        ));
    }
    let current = existing(&s, &id)?;
    let mut merged =
        serde_json::to_value(&current).map_err(|e| AdminError::BadRequest(e.to_string()))?;
    let mut status = None;
    if let Some(map) = merged.as_object_mut() {
        for (k, v) in patch {
            if k == "status" {
                status = Some(
                    serde_json::from_value::<Status>(v.clone())
                        .map_err(|e| AdminError::BadRequest(format!("invalid status: {e}")))?,
                );
            }
            if v.is_null() {
                map.remove(&k);
            } else {
                map.insert(k, v);
            }
        }
    }
    let instance: Instance = serde_json::from_value(merged)
        .map_err(|e| AdminError::BadRequest(format!("invalid instance: {e}")))?;
    s.update_instance(instance, status)?;
    ok_json(&existing(&s, &id)?)
}

async fn delete_instance(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> AdminResult {
    if lock(&s.store).remove(&id) {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(AdminError::NotFound(format!(
            "instance {id} does not exist"
        )))
    }
}

async fn list_faults(State(s): State<Arc<Shared>>) -> AdminResult {
    ok_json(&lock(&s.faults).list())
}

async fn add_faults(State(s): State<Arc<Shared>>, body: Bytes) -> AdminResult {
    let faults = parse::<OneOrMany<Fault>>(&body)?.into_vec();
    for (i, fault) in faults.iter().enumerate() {
        fault
            .validate()
            .map_err(|m| AdminError::BadRequest(format!("fault {i}: {m}")))?;
    }
    let mut ids = Vec::new();
    for fault in faults {
        ids.push(s.add_fault(fault)?);
    }
    ok_json(&json!({ "ids": ids }))
}

async fn clear_faults(State(s): State<Arc<Shared>>) -> AdminResult {
    lock(&s.faults).clear();
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete_fault(State(s): State<Arc<Shared>>, Path(id): Path<u64>) -> AdminResult {
    if lock(&s.faults).remove(id) {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(AdminError::NotFound(format!("fault {id} does not exist")))
    }
}

#[derive(Deserialize)]
struct CallQuery {
    #[serde(default)]
    since: u64,
    action: Option<String>,
    instance: Option<String>,
}

async fn list_calls(State(s): State<Arc<Shared>>, Query(q): Query<CallQuery>) -> AdminResult {
    let calls: Vec<CallRecord> = lock(&s.log)
        .since(q.since)
        .into_iter()
        .filter(|c| q.action.as_ref().is_none_or(|a| &c.action == a))
        .filter(|c| {
            q.instance
                .as_ref()
                .is_none_or(|i| c.instance_ids.contains(i))
        })
        .collect();
    ok_json(&calls)
}

async fn clear_calls(State(s): State<Arc<Shared>>) -> AdminResult {
    lock(&s.log).clear();
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Settings {
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    transition_delay: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    default_stopped_mode: Option<StoppedMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    qps: Option<BTreeMap<String, u32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rate_limits: Option<RateLimits>,
}

fn settings(s: &Shared) -> Settings {
    let (qps, rate_limits) = {
        let throttle = lock(&s.throttle);
        (throttle.qps().clone(), throttle.rate_limits().clone())
    };
    let store = lock(&s.store);
    Settings {
        transition_delay: Some(store.transition_delay()),
        default_stopped_mode: Some(store.default_stopped_mode()),
        qps: Some(qps),
        rate_limits: Some(rate_limits),
    }
}

async fn get_settings(State(s): State<Arc<Shared>>) -> AdminResult {
    let mut value = serde_json::to_value(settings(&s)).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.insert("instanceCount".to_owned(), json!(lock(&s.store).len()));
    }
    ok_json(&value)
}

async fn patch_settings(State(s): State<Arc<Shared>>, body: Bytes) -> AdminResult {
    let patch: Settings = parse(&body)?;
    if let Some(qps) = patch.qps {
        s.set_qps(qps)?;
    }
    if let Some(limits) = patch.rate_limits {
        s.set_rate_limits(limits)?;
    }
    let mut store = lock(&s.store);
    if let Some(d) = patch.transition_delay {
        store.set_transition_delay(d);
    }
    if let Some(m) = patch.default_stopped_mode {
        store.set_default_stopped_mode(m);
    }
    drop(store);
    ok_json(&settings(&s))
}

async fn add_access_key(State(s): State<Arc<Shared>>, body: Bytes) -> AdminResult {
    let key: AccessKey = parse(&body)?;
    s.add_access_key(key)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn reset(State(s): State<Arc<Shared>>) -> AdminResult {
    s.reset();
    Ok(StatusCode::NO_CONTENT.into_response())
}
