//! `labelSelector` and `fieldSelector` query parameters: parsing (400 on bad syntax) and
//! matching, used by list, watch and deletecollection.

pub mod field;
pub mod label;

pub use field::FieldSelector;
pub use label::LabelSelector;

use serde_json::Value;

/// Both selectors of a request.
#[derive(Debug, Clone, Default)]
pub struct Selectors {
    /// Label selector.
    pub labels: LabelSelector,
    /// Field selector.
    pub fields: FieldSelector,
}

impl Selectors {
    /// Whether `obj` (in the served view, for field paths) matches both.
    pub fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(crate::object::labels(obj)) && self.fields.matches(obj)
    }

    /// True when nothing is filtered.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }
}
