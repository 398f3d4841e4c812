//! Field selectors (`metadata.name=x,status.phase!=Active`). Any dotted path of the served
//! object can be selected on (a superset of what a real server allows per kind).

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
struct Requirement {
    path: String,
    value: String,
    negate: bool,
}

/// A parsed field selector (all requirements must hold).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector {
    reqs: Vec<Requirement>,
}

fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

impl FieldSelector {
    /// Parses a selector; the error is the 400 message.
    ///
    /// # Errors
    ///
    /// The message of the 400 answer when a requirement is malformed.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (path, value, negate) = if let Some((k, v)) = part.split_once("!=") {
                (k, v, true)
            } else if let Some((k, v)) = part.split_once("==") {
                (k, v, false)
            } else if let Some((k, v)) = part.split_once('=') {
                (k, v, false)
            } else {
                return Err(format!(
                    "invalid selector: '{part}'; can't understand '{part}'"
                ));
            };
            let path = path.trim();
            if path.is_empty() || path.split('.').any(str::is_empty) {
                return Err(format!("invalid field path {path:?} in field selector"));
            }
            reqs.push(Requirement {
                path: path.to_string(),
                value: value.trim().to_string(),
                negate,
            });
        }
        Ok(Self { reqs })
    }

    /// True when the selector selects everything.
    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// The exact `metadata.name` this selector pins, if any (lets lists skip a scan).
    pub fn pinned_name(&self) -> Option<&str> {
        self.reqs
            .iter()
            .find(|r| r.path == "metadata.name" && !r.negate)
            .map(|r| r.value.as_str())
    }

    /// Whether `obj` matches.
    pub fn matches(&self, obj: &Value) -> bool {
        self.reqs
            .iter()
            .all(|r| (text(crate::object::lookup(obj, &r.path)) == r.value) != r.negate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matching() {
        let o = json!({"metadata": {"name": "a", "namespace": "d"}, "status": {"phase": "Active"}, "count": 2,
            "involvedObject": {"kind": "Pod"}});
        let m = |s: &str| FieldSelector::parse(s).expect("parses").matches(&o);
        assert!(m("metadata.name=a"));
        assert!(m("metadata.name==a,metadata.namespace=d"));
        assert!(m("status.phase!=Terminating"));
        assert!(m("count=2"));
        assert!(m("involvedObject.kind=Pod"));
        assert!(m("spec.missing="));
        assert!(!m("metadata.name=b"));
        assert_eq!(
            FieldSelector::parse("metadata.name=a")
                .expect("ok")
                .pinned_name(),
            Some("a")
        );
        assert!(FieldSelector::parse("nonsense").is_err());
        assert!(FieldSelector::parse("a..b=c").is_err());
    }
}
