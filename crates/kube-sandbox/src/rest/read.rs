//! GET of one object and LIST: `kind: XList` with `metadata.resourceVersion`, label and field
//! selectors, `limit` / `continue` pagination (expired continue tokens answer 410), the
//! `resourceVersion` / `resourceVersionMatch` rules, and Table output. Large lists are
//! serialized straight into the response buffer after the store lock is released.

use std::io::Write;
use std::sync::Arc;

use base64::Engine;
use serde_json::{Value, json};

use crate::api_error::ApiError;
use crate::object::{self, ObjectKey};
use crate::rest::{Body, ListOptions, Reply, TableRequest, Target};
use crate::store::Store;
use crate::table;

/// GET of one object (or its `/status`).
///
/// # Errors
///
/// 404 when the object does not exist.
pub fn get(store: &Store, t: &Target, tbl: Option<TableRequest>) -> Result<Reply, ApiError> {
    let rt = &t.rt;
    let obj = {
        let st = store.read();
        st.get(&rt.storage, &t.key()).map(|e| e.object.clone())
    }
    .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, t.name()))?;
    let view = rt.to_view(&obj);
    let body = match tbl {
        Some(tr) => table::table(
            rt,
            &[table::row(rt, &obj, &view, tr.include)],
            &json!({"resourceVersion": object::resource_version(&obj)}),
            true,
        ),
        None => view.into_owned(),
    };
    Ok(Reply::json(200, body))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: u64,
    ns: String,
    name: String,
}

fn encode_continue(rv: u64, key: &ObjectKey) -> String {
    let token = ContinueToken {
        rv,
        ns: key.namespace.clone(),
        name: key.name.clone(),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&token).unwrap_or_default())
}

fn decode_continue(s: &str) -> Result<ContinueToken, ApiError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"))
}

fn parse_rv(s: &str) -> Result<u64, ApiError> {
    s.parse()
        .map_err(|_| ApiError::bad_request(format!("invalid resource version: {s:?}")))
}

/// LIST.
///
/// # Errors
///
/// 400 for a malformed `resourceVersion`, `resourceVersionMatch` or continue token, 410 Gone
/// when the requested version was compacted, 504 when it is newer than the store.
pub fn list(
    store: &Store,
    t: &Target,
    opts: &ListOptions,
    tbl: Option<TableRequest>,
) -> Result<Reply, ApiError> {
    let rt = &t.rt;
    let ns = t.namespace.as_deref();
    let (items, list_rv, next) = {
        let st = store.read();
        let current = st.rv();
        let (list_rv, after) = if let Some(token) = &opts.continue_token {
            let c = decode_continue(token)?;
            if c.rv < st.floor() {
                return Err(ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                ));
            }
            (c.rv, Some(ObjectKey::new(&c.ns, &c.name)))
        } else {
            let asked = opts.resource_version.as_deref().filter(|s| !s.is_empty());
            match (
                asked.map(parse_rv).transpose()?,
                opts.resource_version_match.as_deref(),
            ) {
                (Some(n), _) if n > current => {
                    return Err(ApiError::too_large_resource_version(n, current));
                }
                (Some(n), Some("Exact")) if n != current => {
                    return Err(ApiError::expired(format!(
                        "too old resource version: {n} ({current})"
                    )));
                }
                (None, Some(m)) if !m.is_empty() => {
                    return Err(ApiError::bad_request(
                        "resourceVersionMatch is forbidden unless resourceVersion is provided",
                    ));
                }
                (_, Some(m)) if !matches!(m, "" | "Exact" | "NotOlderThan") => {
                    return Err(ApiError::bad_request(format!(
                        "resourceVersionMatch: Unsupported value: {m:?}: supported values: \"Exact\", \"NotOlderThan\""
                    )));
                }
                _ => (current, None),
            }
        };
        let mut items: Vec<Arc<Value>> = Vec::new();
        let mut next = None;
        let mut last: Option<ObjectKey> = None;
        for (k, e) in st.range(&rt.storage, ns, after.as_ref()) {
            if !opts.selectors.is_empty() && !opts.selectors.matches(&rt.to_view(&e.object)) {
                continue;
            }
            if opts.limit > 0 && items.len() == opts.limit {
                next = last.as_ref().map(|l| encode_continue(list_rv, l));
                break;
            }
            items.push(e.object.clone());
            last = Some(k.clone());
        }
        (items, list_rv, next)
    };
    let mut meta = json!({"resourceVersion": list_rv.to_string()});
    if let Some(c) = &next {
        meta["continue"] = json!(c);
    }
    if let Some(tr) = tbl {
        let rows: Vec<Value> = items
            .iter()
            .map(|o| table::row(rt, o, &rt.to_view(o), tr.include))
            .collect();
        return Ok(Reply::json(200, table::table(rt, &rows, &meta, true)));
    }
    let mut buf = Vec::with_capacity(256 + items.len() * 512);
    let write = |buf: &mut Vec<u8>| -> std::io::Result<()> {
        write!(
            buf,
            "{{\"kind\":{},\"apiVersion\":{},\"metadata\":",
            json!(rt.list_kind),
            json!(rt.api_version)
        )?;
        serde_json::to_writer(&mut *buf, &meta)?;
        buf.extend_from_slice(b",\"items\":[");
        for (i, o) in items.iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            serde_json::to_writer(&mut *buf, &*rt.to_view(o))?;
        }
        buf.extend_from_slice(b"]}");
        Ok(())
    };
    write(&mut buf).map_err(|e| ApiError::internal(format!("encoding list: {e}")))?;
    Ok(Reply {
        code: 200,
        body: Body::Raw(buf),
        warnings: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip() {
        let t = encode_continue(7, &ObjectKey::new("ns", "a"));
        let c = decode_continue(&t).expect("decodes");
        assert_eq!((c.rv, c.ns.as_str(), c.name.as_str()), (7, "ns", "a"));
        assert_eq!(decode_continue("!!").err().map(|e| e.code()), Some(400));
    }
}
