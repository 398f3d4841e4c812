//! Events are stored once, in core `v1` form, and served in two views: core `v1` (`kubectl get
//! events`, `kubectl describe`) and `events.k8s.io/v1` (what kube-runtime's `Recorder` writes).
//! This module converts between the two, field for field, as the API server's conversion does.

use serde_json::{Map, Value};

/// core v1 field → events.k8s.io/v1 field.
const FIELDS: [(&str, &str); 15] = [
    ("metadata", "metadata"),
    ("involvedObject", "regarding"),
    ("related", "related"),
    ("message", "note"),
    ("reason", "reason"),
    ("type", "type"),
    ("reportingComponent", "reportingController"),
    ("reportingInstance", "reportingInstance"),
    ("action", "action"),
    ("eventTime", "eventTime"),
    ("series", "series"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

fn convert(
    from: &Value,
    api_version: &str,
    pairs: impl Iterator<Item = (&'static str, &'static str)>,
) -> Value {
    let mut out = Map::new();
    out.insert("apiVersion".into(), Value::String(api_version.into()));
    out.insert("kind".into(), Value::String("Event".into()));
    for (src, dst) in pairs {
        if let Some(v) = from.get(src).filter(|v| !v.is_null()) {
            out.insert(dst.into(), v.clone());
        }
    }
    Value::Object(out)
}

/// Stored core Event → `events.k8s.io/v1` Event.
pub fn core_to_v1(core: &Value) -> Value {
    convert(core, "events.k8s.io/v1", FIELDS.iter().copied())
}

/// `events.k8s.io/v1` Event → core Event (the stored form).
pub fn v1_to_core(v1: &Value) -> Value {
    convert(v1, "v1", FIELDS.iter().map(|(c, e)| (*e, *c)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips() {
        let v1 = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e", "namespace": "d"},
            "regarding": {"kind": "Pod", "name": "p"}, "note": "hello", "reason": "Started", "type": "Normal",
            "reportingController": "ctl", "reportingInstance": "ctl-1", "action": "Start",
            "eventTime": "2024-01-01T00:00:00.000000Z", "series": {"count": 2, "lastObservedTime": "2024-01-01T00:00:01.000000Z"}});
        let core = v1_to_core(&v1);
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["involvedObject"]["name"], "p");
        assert_eq!(core["message"], "hello");
        assert_eq!(core["reportingComponent"], "ctl");
        assert!(core.get("note").is_none());
        assert_eq!(core_to_v1(&core), v1);
    }
}
