//! The HTTP front: one axum fallback handler that routes Kubernetes API paths (discovery,
//! version, OpenAPI, resources), decodes query parameters and bodies, calls the REST layer and
//! renders the reply (or the `Status` of the error). Watches stream chunked JSON lines.

pub mod body;
pub mod params;
pub mod route;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, header};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::api_error::ApiError;
use crate::patch::{PATCH_CONTENT_TYPES, PatchType};
use crate::rest::{self, Target, watch::WatchConfig};
use crate::selector::FieldSelector;
use crate::store::Store;
use crate::{discovery, openapi};
use params::Query;
use route::{ResourcePath, Route};

/// Shared state of the HTTP handlers.
#[derive(Debug)]
pub struct App {
    /// The store.
    pub store: Arc<Store>,
    /// Watch settings.
    pub watch: WatchConfig,
    /// Cancelled at shutdown (ends watches).
    pub shutdown: CancellationToken,
    /// The address clients reach the server at.
    pub addr: SocketAddr,
    /// Largest request body.
    pub max_body: usize,
    /// Injected failures (none unless a test sets them).
    pub faults: Arc<crate::faults::Faults>,
}

/// The router.
pub fn router(app: Arc<App>) -> Router {
    Router::new().fallback(handle).with_state(app)
}

/// The router of a fresh, empty API server with `config` and no socket, for a client's transport
/// in tests (`kube::Client::new(in_memory_router(&config), "default")`). Nothing is bootstrapped,
/// not even the `default` namespace.
pub fn in_memory_router(config: &crate::SandboxConfig) -> Router {
    in_memory_router_with_faults(config, Arc::default())
}

/// [`in_memory_router`] whose requests fail as `faults` says (a test sets its rules).
pub fn in_memory_router_with_faults(
    config: &crate::SandboxConfig,
    faults: Arc<crate::faults::Faults>,
) -> Router {
    router(Arc::new(App {
        faults,
        store: Arc::new(Store::new(config.history_capacity, config.watch_buffer)),
        watch: WatchConfig {
            bookmark_interval: config.bookmark_interval,
            max_timeout: config.max_watch_timeout,
        },
        shutdown: CancellationToken::new(),
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        max_body: config.max_body_bytes,
    }))
}

async fn handle(State(app): State<Arc<App>>, req: Request) -> Response {
    let method = req.method().clone();
    let uri = req.uri().clone();
    if let Some(injected) = app.faults.check(&method, uri.path()) {
        tracing::debug!(%method, %uri, status = injected.code(), "request failed by an injected fault");
        return injected.into_response();
    }
    let resp = match dispatch(&app, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    tracing::debug!(%method, %uri, status = resp.status().as_u16(), "request");
    resp
}

fn header_str(req: &Request, name: header::HeaderName) -> &str {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn dispatch(app: &Arc<App>, req: Request) -> Result<Response, ApiError> {
    let route = route::parse(req.uri().path());
    if let Route::Resource(rp) = route {
        return resource(app, req, rp).await;
    }
    if req.method() != Method::GET {
        return Err(ApiError::method_not_allowed());
    }
    let reg = || app.store.read().registry.clone();
    let v = match route {
        Route::Root => {
            json!({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/openapi/v3", "/readyz", "/version"]})
        }
        Route::Version => discovery::version(),
        Route::Health => {
            let mut r = "ok".into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            return Ok(r);
        }
        Route::Api => discovery::core_versions(&app.addr.to_string()),
        Route::Apis => discovery::groups(&reg()),
        Route::ApiGroup(g) => {
            discovery::group(&reg(), &g).ok_or_else(ApiError::no_such_resource)?
        }
        Route::GroupVersion(g, v) => {
            discovery::resources(&reg(), &g, &v).ok_or_else(ApiError::no_such_resource)?
        }
        Route::OpenApiV3Index => openapi::v3_index(&reg()),
        Route::OpenApiV3(p) => {
            openapi::v3_document(&reg(), &p).ok_or_else(ApiError::no_such_resource)?
        }
        Route::OpenApiV2 | Route::NotFound | Route::Resource(_) => {
            return Err(ApiError::no_such_resource());
        }
    };
    Ok(body::ok_json(&v))
}

async fn resource(app: &Arc<App>, req: Request, rp: ResourcePath) -> Result<Response, ApiError> {
    let rt = app
        .store
        .read()
        .registry
        .lookup(&rp.group, &rp.version, &rp.plural)
        .ok_or_else(ApiError::no_such_resource)?;
    if !rt.namespaced && rp.namespace.is_some() {
        return Err(ApiError::no_such_resource());
    }
    let status = match rp.subresource.as_deref() {
        None => false,
        Some("status") if rt.status_subresource => true,
        Some(_) => return Err(ApiError::no_such_resource()),
    };
    let query = Query::parse(req.uri().query());
    let accept = header_str(&req, header::ACCEPT).to_string();
    let content_type = header_str(&req, header::CONTENT_TYPE).to_string();
    let mut t = Target {
        rt: rt.clone(),
        namespace: rp.namespace.clone(),
        name: rp.name.clone(),
        status,
    };
    let method = req.method().clone();
    let body_bytes = body::read(req.into_body(), app.max_body).await?;
    let needs_namespace = rt.namespaced && t.namespace.is_none();
    let tbl = query.table(&accept)?;
    let store = &app.store;
    let reply = match (&method, t.name.is_some()) {
        (&Method::GET, has_name) if rp.legacy_watch || query.is_watch()? => {
            let mut opts = query.list_options()?;
            if has_name {
                let pin = format!("metadata.name={}", t.name());
                opts.selectors.fields =
                    FieldSelector::parse(&pin).map_err(ApiError::bad_request)?;
                t.name = None;
            }
            let rx = rest::watch::watch(store, &t, opts, tbl, &app.watch, app.shutdown.clone())?;
            let stream = futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
            });
            let mut resp = axum::body::Body::from_stream(stream).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return Ok(resp);
        }
        (&Method::GET, false) => rest::read::list(store, &t, &query.list_options()?, tbl)?,
        _ if needs_namespace => return Err(ApiError::no_such_resource()),
        (&Method::GET, true) => rest::read::get(store, &t, tbl)?,
        (&Method::POST, false) if !status => {
            let obj = body::decode_object(&content_type, &body_bytes)?;
            rest::create::create(store, &t, obj, &query.write_options()?)?
        }
        (&Method::PUT, true) => {
            let obj = body::decode_object(&content_type, &body_bytes)?;
            rest::update::update(store, &t, obj, &query.write_options()?)?
        }
        (&Method::PATCH, true) => {
            let kind = PatchType::from_content_type(&content_type).ok_or_else(|| {
                ApiError::unsupported_media_type(
                    &body::media_type(&content_type),
                    &PATCH_CONTENT_TYPES,
                )
            })?;
            rest::patch::patch(store, &t, kind, &body_bytes, &query.write_options()?)?
        }
        (&Method::DELETE, has_name) if !status => {
            let mut opts = query.delete_options()?;
            if !body_bytes.is_empty() {
                opts.merge_json(&body::decode_object(&content_type, &body_bytes)?)?;
            }
            if has_name {
                rest::delete::delete(store, &t, &opts)?
            } else {
                rest::delete::delete_collection(store, &t, &query.list_options()?, &opts)?
            }
        }
        _ => return Err(ApiError::method_not_allowed()),
    };
    Ok(body::render(reply))
}
