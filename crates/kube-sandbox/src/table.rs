//! `Table` responses (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`), which is what
//! `kubectl get` asks for: a CRD's `additionalPrinterColumns`, or the columns a real server
//! prints for the built-in kinds, plus the row objects `includeObject` asks for.

pub mod age;

use serde_json::{Value, json};

use crate::object;
use crate::resource::{PrinterColumn, ResourceType, TableLayout};

/// `includeObject`: what each row carries besides its cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// Nothing.
    None,
    /// `PartialObjectMetadata` (the default).
    #[default]
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// Parses the query parameter.
    ///
    /// # Errors
    ///
    /// The message of the 400 answer for a value other than `None`, `Metadata` or `Object`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "None" => Ok(Self::None),
            "" | "Metadata" => Ok(Self::Metadata),
            "Object" => Ok(Self::Object),
            other => Err(format!(
                "includeObject: Unsupported value: {other:?}: supported values: \"None\", \"Metadata\", \"Object\""
            )),
        }
    }
}

fn col(name: &str, type_: &str, format: &str, description: &str, priority: i64) -> Value {
    json!({"name": name, "type": type_, "format": format, "description": description, "priority": priority})
}

fn name_col() -> Value {
    col(
        "Name",
        "string",
        "name",
        "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically.",
        0,
    )
}

fn age_col() -> Value {
    col(
        "Age",
        "string",
        "",
        "CreationTimestamp is a timestamp representing the server time when this object was created.",
        0,
    )
}

fn created_at_col() -> Value {
    col(
        "Created At",
        "date",
        "",
        "CreationTimestamp is a timestamp representing the server time when this object was created.",
        0,
    )
}

/// Column definitions of a resource's tables.
pub fn column_definitions(rt: &ResourceType) -> Vec<Value> {
    match &rt.table {
        TableLayout::Default | TableLayout::Crd => vec![name_col(), created_at_col()],
        TableLayout::Namespace => vec![
            name_col(),
            col("Status", "string", "", "The status of the namespace", 0),
            age_col(),
        ],
        TableLayout::Secret => vec![
            name_col(),
            col(
                "Type",
                "string",
                "",
                "Used to facilitate programmatic handling of secret data.",
                0,
            ),
            col("Data", "string", "", "Data contains the secret data.", 0),
            age_col(),
        ],
        TableLayout::ConfigMap => vec![
            name_col(),
            col(
                "Data",
                "string",
                "",
                "Data contains the configuration data.",
                0,
            ),
            age_col(),
        ],
        TableLayout::Event => vec![
            col(
                "Last Seen",
                "string",
                "",
                "Time of the most recent occurrence of this event.",
                0,
            ),
            col(
                "Type",
                "string",
                "",
                "Type of this event (Normal, Warning).",
                0,
            ),
            col(
                "Reason",
                "string",
                "",
                "This should be a short, machine understandable string.",
                0,
            ),
            col(
                "Object",
                "string",
                "",
                "The object that this event is about.",
                0,
            ),
            col(
                "Subobject",
                "string",
                "",
                "The field of the object this event is about.",
                1,
            ),
            col(
                "Source",
                "string",
                "",
                "The component reporting this event.",
                1,
            ),
            col(
                "Message",
                "string",
                "",
                "A human-readable description of the status of this operation.",
                0,
            ),
            col(
                "First Seen",
                "string",
                "",
                "The time at which the event was first recorded.",
                1,
            ),
            col(
                "Count",
                "string",
                "",
                "The number of times this event has occurred.",
                1,
            ),
            name_col().as_object().map_or_else(name_col, |m| {
                let mut m = m.clone();
                m.insert("priority".into(), json!(1));
                Value::Object(m)
            }),
        ],
        TableLayout::Deployment => vec![
            name_col(),
            col(
                "Ready",
                "string",
                "",
                "Number of the pod with ready state",
                0,
            ),
            col(
                "Up-to-date",
                "string",
                "",
                "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
                0,
            ),
            col(
                "Available",
                "string",
                "",
                "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
                0,
            ),
            age_col(),
        ],
        TableLayout::ServiceAccount => vec![
            name_col(),
            col(
                "Secrets",
                "string",
                "",
                "Secrets is a list of the secrets in the same namespace.",
                0,
            ),
            age_col(),
        ],
        TableLayout::Lease => vec![
            name_col(),
            col("Holder", "string", "", "The holder of the lease.", 0),
            age_col(),
        ],
        TableLayout::Service => vec![
            name_col(),
            col("Type", "string", "", "The type of the service.", 0),
            col(
                "Cluster-IP",
                "string",
                "",
                "The cluster IP of the service.",
                0,
            ),
            col(
                "External-IP",
                "string",
                "",
                "The external IP of the service.",
                0,
            ),
            col("Port(s)", "string", "", "The ports of the service.", 0),
            age_col(),
        ],
        TableLayout::Custom(columns) => std::iter::once(name_col())
            .chain(
                columns
                    .iter()
                    .map(|c| col(&c.name, &c.type_, &c.format, &c.description, c.priority)),
            )
            .collect(),
    }
}

fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn age(obj: &Value) -> Value {
    json!(age::since(
        object::meta(obj)
            .and_then(|m| m.get("creationTimestamp"))
            .and_then(Value::as_str)
    ))
}

fn custom_cell(c: &PrinterColumn, obj: &Value) -> Value {
    let Some(v) = c.path.find(obj).into_iter().next() else {
        return Value::Null;
    };
    match c.type_.as_str() {
        "integer" => v.as_i64().map_or(Value::Null, Value::from),
        "number" => v.as_f64().map_or(Value::Null, Value::from),
        "boolean" => v.as_bool().map_or(Value::Null, Value::from),
        // The server renders dates as ages, as the CRD table convertor does.
        "date" => v
            .as_str()
            .map_or(Value::Null, |t| Value::from(age::since(Some(t)))),
        _ => match v {
            Value::String(s) => Value::String(s.clone()),
            Value::Null => Value::Null,
            other => Value::String(other.to_string()),
        },
    }
}

fn count_keys(obj: &Value, fields: &[&str]) -> usize {
    fields
        .iter()
        .filter_map(|f| obj.get(*f).and_then(Value::as_object))
        .map(serde_json::Map::len)
        .sum()
}

fn event_cells(e: &Value) -> Vec<Value> {
    let first = e
        .get("firstTimestamp")
        .and_then(Value::as_str)
        .or_else(|| e.get("eventTime").and_then(Value::as_str));
    let first_seen = age::since(first);
    let mut last_seen = match e.get("lastTimestamp").and_then(Value::as_str) {
        Some(t) => age::since(Some(t)),
        None => first_seen.clone(),
    };
    let mut count = e.get("count").and_then(Value::as_i64).unwrap_or(0);
    if let Some(series) = e.get("series") {
        last_seen = age::since(series.get("lastObservedTime").and_then(Value::as_str));
        count = series.get("count").and_then(Value::as_i64).unwrap_or(count);
    } else if count == 0 {
        count = 1;
    }
    let involved = e.get("involvedObject").cloned().unwrap_or(Value::Null);
    let source = e
        .pointer("/source/component")
        .and_then(Value::as_str)
        .or_else(|| e.get("reportingComponent").and_then(Value::as_str))
        .unwrap_or("");
    vec![
        json!(last_seen),
        json!(text(e.get("type"))),
        json!(text(e.get("reason"))),
        json!(format!(
            "{}/{}",
            text(involved.get("kind")).to_lowercase(),
            text(involved.get("name"))
        )),
        json!(text(involved.get("fieldPath"))),
        json!(source),
        json!(text(e.get("message"))),
        json!(first_seen),
        json!(count.to_string()),
        json!(object::name(e)),
    ]
}

fn service_ports(svc: &Value) -> String {
    let ports: Vec<String> = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            format!(
                "{}/{}",
                text(p.get("port")),
                p.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
            )
        })
        .collect();
    if ports.is_empty() {
        "<none>".into()
    } else {
        ports.join(",")
    }
}

/// The cells of one row, from the stored object.
pub fn cells(rt: &ResourceType, obj: &Value) -> Vec<Value> {
    let name = json!(object::name(obj));
    let created = object::meta(obj)
        .and_then(|m| m.get("creationTimestamp"))
        .cloned()
        .unwrap_or(Value::Null);
    match &rt.table {
        TableLayout::Default | TableLayout::Crd => vec![name, created],
        TableLayout::Namespace => vec![name, json!(text(obj.pointer("/status/phase"))), age(obj)],
        TableLayout::Secret => {
            vec![
                name,
                json!(text(obj.get("type"))),
                json!(count_keys(obj, &["data"]).to_string()),
                age(obj),
            ]
        }
        TableLayout::ConfigMap => vec![
            name,
            json!(count_keys(obj, &["data", "binaryData"]).to_string()),
            age(obj),
        ],
        TableLayout::Event => event_cells(obj),
        TableLayout::Deployment => {
            let n = |p: &str| obj.pointer(p).and_then(Value::as_i64).unwrap_or(0);
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    n("/status/readyReplicas"),
                    obj.pointer("/spec/replicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(1)
                )),
                json!(n("/status/updatedReplicas").to_string()),
                json!(n("/status/availableReplicas").to_string()),
                age(obj),
            ]
        }
        TableLayout::ServiceAccount => {
            let n = obj
                .get("secrets")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            vec![name, json!(n.to_string()), age(obj)]
        }
        TableLayout::Lease => vec![
            name,
            json!(text(obj.pointer("/spec/holderIdentity"))),
            age(obj),
        ],
        TableLayout::Service => {
            let ip = obj
                .pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .unwrap_or("<none>");
            vec![
                name,
                json!(text(obj.pointer("/spec/type"))),
                json!(ip),
                json!("<none>"),
                json!(service_ports(obj)),
                age(obj),
            ]
        }
        TableLayout::Custom(columns) => std::iter::once(name)
            .chain(columns.iter().map(|c| custom_cell(c, obj)))
            .collect(),
    }
}

/// One row: cells from the stored object, and the served view per `include`.
pub fn row(rt: &ResourceType, stored: &Value, view: &Value, include: IncludeObject) -> Value {
    let mut row = json!({"cells": cells(rt, stored)});
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => {
            row["object"] = json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": view.get("metadata").cloned().unwrap_or_else(|| json!({})),
            });
        }
        IncludeObject::Object => row["object"] = view.clone(),
    }
    row
}

/// A `Table` with `rows` and list metadata (`resourceVersion`, `continue`).
pub fn table(rt: &ResourceType, rows: &[Value], list_meta: &Value, with_columns: bool) -> Value {
    let mut t = json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "rows": rows,
    });
    if with_columns {
        t["columnDefinitions"] = Value::Array(column_definitions(rt));
    }
    t
}

/// Whether an `Accept` header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.split(';').any(|p| p.trim() == "as=Table"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin::builtin_types;
    use crate::jsonpath::JsonPath;

    fn builtin(plural: &str) -> ResourceType {
        builtin_types()
            .into_iter()
            .find(|r| r.plural == plural && r.group.is_empty())
            .expect("exists")
    }

    #[test]
    fn custom_columns() {
        let mut rt = ResourceType::builtin(
            "ecspower.dev",
            "v1alpha1",
            "ecsinstancepowers",
            "EcsInstancePower",
        );
        let pc = |name: &str, type_: &str, path: &str| PrinterColumn {
            name: name.into(),
            type_: type_.into(),
            format: String::new(),
            description: String::new(),
            priority: 0,
            path: JsonPath::parse(path).expect("path"),
        };
        rt.table = TableLayout::Custom(vec![
            pc("Instance", "string", ".spec.instanceId"),
            pc(
                "Ready",
                "string",
                r#".status.conditions[?(@.type=="Ready")].status"#,
            ),
            pc("Count", "integer", ".status.count"),
            pc("Age", "date", ".metadata.creationTimestamp"),
        ]);
        let o = json!({"metadata": {"name": "x", "creationTimestamp": "2024-01-01T00:00:00Z"}, "spec": {"instanceId": "i-1"},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let c = cells(&rt, &o);
        assert_eq!(
            c[..4],
            [json!("x"), json!("i-1"), json!("True"), Value::Null]
        );
        // Dates are rendered as ages by the server, as the CRD table convertor does.
        assert!(
            c[4].as_str()
                .is_some_and(|age| age.ends_with('y') || age.ends_with('d')),
            "{c:?}"
        );
        let defs = column_definitions(&rt);
        assert_eq!(defs.len(), 5);
        assert_eq!(defs[4]["type"], "date");
        let r = row(&rt, &o, &o, IncludeObject::Metadata);
        assert_eq!(r["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(r["object"]["metadata"]["name"], "x");
        let t = table(&rt, &[r], &json!({"resourceVersion": "5"}), true);
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["columnDefinitions"].as_array().map(Vec::len), Some(5));
    }

    #[test]
    fn builtin_columns() {
        let s = json!({"metadata": {"name": "s", "creationTimestamp": object::now_time()}, "type": "Opaque", "data": {"a": "", "b": ""}});
        let c = cells(&builtin("secrets"), &s);
        assert_eq!(c[1], "Opaque");
        assert_eq!(c[2], "2");
        let e = json!({"metadata": {"name": "e"}, "involvedObject": {"kind": "EcsInstancePower", "name": "x"}, "type": "Warning",
            "reason": "NoStock", "message": "m", "eventTime": object::now_micro(), "reportingComponent": "ctl"});
        let c = cells(&builtin("events"), &e);
        assert_eq!(c[3], "ecsinstancepower/x");
        assert_eq!(c[5], "ctl");
        assert_eq!(c[8], "1");
    }

    #[test]
    fn accept_header() {
        assert!(wants_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        ));
        assert!(!wants_table("application/json"));
        assert!(IncludeObject::parse("Object").is_ok_and(|i| i == IncludeObject::Object));
        assert!(IncludeObject::parse("x").is_err());
    }
}
