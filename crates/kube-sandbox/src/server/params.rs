//! Query parameters: parsing and the typed options of each verb (`dryRun`, `fieldManager`,
//! `fieldValidation`, selectors, `resourceVersion`, `limit`, `continue`, watch flags), with
//! 400 `BadRequest` for malformed values.

use crate::api_error::ApiError;
use crate::rest::delete::DeleteOptions;
use crate::rest::{FieldValidation, ListOptions, TableRequest, WriteOptions};
use crate::selector::{FieldSelector, LabelSelector, Selectors};
use crate::table::IncludeObject;

/// Decoded query parameters.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Parses a raw query string.
    pub fn parse(raw: Option<&str>) -> Self {
        Self {
            pairs: raw
                .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .unwrap_or_default(),
        }
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, key: &str) -> impl Iterator<Item = &str> {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean flag (`true`/`1`/`false`/`0`).
    ///
    /// # Errors
    ///
    /// 400 when the value is not a boolean.
    pub fn flag(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some("true" | "1" | "True") => Ok(Some(true)),
            Some("false" | "0" | "False" | "") => Ok(Some(false)),
            Some(other) => Err(ApiError::bad_request(format!(
                "invalid boolean value for {key}: {other:?}"
            ))),
        }
    }

    fn number(&self, key: &str) -> Result<Option<u64>, ApiError> {
        self.get(key)
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| ApiError::bad_request(format!("invalid value for {key}: {v:?}")))
            })
            .transpose()
    }

    fn dry_run(&self) -> Result<bool, ApiError> {
        let mut dry = false;
        for v in self.all("dryRun") {
            match v {
                "All" => dry = true,
                "" => {}
                other => {
                    return Err(ApiError::bad_request(format!(
                        "dryRun: Unsupported value: {other:?}: supported values: \"All\""
                    )));
                }
            }
        }
        Ok(dry)
    }

    /// Options of create, update and patch.
    ///
    /// # Errors
    ///
    /// 400 for an unsupported `fieldValidation`, a `fieldManager` over 128 bytes, or a
    /// malformed `dryRun` or `force`.
    pub fn write_options(&self) -> Result<WriteOptions, ApiError> {
        let field_validation = match self.get("fieldValidation").unwrap_or("") {
            "Strict" => FieldValidation::Strict,
            "Ignore" => FieldValidation::Ignore,
            "" | "Warn" => FieldValidation::Warn,
            other => {
                return Err(ApiError::bad_request(format!(
                    "fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
                )));
            }
        };
        let field_manager = self.get("fieldManager").map(str::to_string);
        if let Some(m) = &field_manager
            && m.len() > 128
        {
            return Err(ApiError::bad_request(
                "fieldManager: Too long: may not be more than 128 bytes",
            ));
        }
        Ok(WriteOptions {
            dry_run: self.dry_run()?,
            field_manager,
            field_validation,
            force: self.flag("force")?.unwrap_or(false),
        })
    }

    /// Options of list, watch and deletecollection.
    ///
    /// # Errors
    ///
    /// 400 for a malformed selector, number or flag.
    pub fn list_options(&self) -> Result<ListOptions, ApiError> {
        let labels = LabelSelector::parse(self.get("labelSelector").unwrap_or(""))
            .map_err(ApiError::bad_request)?;
        let fields = FieldSelector::parse(self.get("fieldSelector").unwrap_or(""))
            .map_err(ApiError::bad_request)?;
        Ok(ListOptions {
            selectors: Selectors { labels, fields },
            resource_version: self.get("resourceVersion").map(str::to_string),
            resource_version_match: self
                .get("resourceVersionMatch")
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            limit: usize::try_from(self.number("limit")?.unwrap_or(0)).unwrap_or(usize::MAX),
            continue_token: self
                .get("continue")
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            allow_bookmarks: self.flag("allowWatchBookmarks")?.unwrap_or(false),
            send_initial_events: self.flag("sendInitialEvents")?,
            timeout_seconds: self.number("timeoutSeconds")?,
        })
    }

    /// Options of delete (the body may add more).
    ///
    /// # Errors
    ///
    /// 400 for a malformed `dryRun`.
    pub fn delete_options(&self) -> Result<DeleteOptions, ApiError> {
        Ok(DeleteOptions {
            dry_run: self.dry_run()?,
            ..DeleteOptions::default()
        })
    }

    /// `watch=true` (or `1`).
    ///
    /// # Errors
    ///
    /// 400 when `watch` is not a boolean.
    pub fn is_watch(&self) -> Result<bool, ApiError> {
        Ok(self.flag("watch")?.unwrap_or(false))
    }

    /// Table options when `Accept` asks for a Table.
    ///
    /// # Errors
    ///
    /// 400 for an unsupported `includeObject`.
    pub fn table(&self, accept: &str) -> Result<Option<TableRequest>, ApiError> {
        if !crate::table::wants_table(accept) {
            return Ok(None);
        }
        let include = IncludeObject::parse(self.get("includeObject").unwrap_or(""))
            .map_err(ApiError::bad_request)?;
        Ok(Some(TableRequest { include }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_options() {
        let q = Query::parse(Some(
            "dryRun=All&fieldManager=kubectl&fieldValidation=Strict&force=true",
        ));
        let w = q.write_options().expect("ok");
        assert!(w.dry_run && w.force);
        assert_eq!(w.field_manager.as_deref(), Some("kubectl"));
        assert_eq!(w.field_validation, FieldValidation::Strict);
        assert!(Query::parse(Some("dryRun=Some")).write_options().is_err());
        assert!(
            Query::parse(Some("fieldValidation=Loud"))
                .write_options()
                .is_err()
        );
        let l = Query::parse(Some("labelSelector=app%3Dweb&limit=500&watch=1&allowWatchBookmarks=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=290"))
            .list_options()
            .expect("ok");
        assert_eq!(l.limit, 500);
        assert!(l.allow_bookmarks);
        assert_eq!(l.send_initial_events, Some(true));
        assert_eq!(l.timeout_seconds, Some(290));
        assert!(!l.selectors.is_empty());
        assert!(Query::parse(Some("watch=1")).is_watch().expect("ok"));
        assert!(Query::parse(Some("watch=maybe")).is_watch().is_err());
        assert!(Query::parse(Some("limit=x")).list_options().is_err());
        assert!(
            Query::parse(Some("labelSelector=%3Dx"))
                .list_options()
                .is_err()
        );
        assert!(
            Query::parse(None)
                .table("application/json;as=Table;v=v1;g=meta.k8s.io")
                .expect("ok")
                .is_some()
        );
    }
}
