//! RPC parameters: the decoded union of the query string and a form body, unique by name, with
//! typed accessors that answer malformed values with `MissingParameter` / `InvalidParameter`
//! as ECS does (booleans, bounded integers, `Name.N` lists, JSON-array strings).

use std::collections::BTreeMap;

use crate::catalogue::EcsError;

/// Decoded request parameters, ordered by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Params {
    map: BTreeMap<String, String>,
}

impl Params {
    /// Adds decoded pairs; a name given twice is `InvalidParameter`.
    pub(crate) fn extend(
        &mut self,
        pairs: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), EcsError> {
        for (k, v) in pairs {
            if self.map.contains_key(&k) {
                return Err(EcsError::invalid(
                    &k,
                    "the parameter is given more than once",
                ));
            }
            self.map.insert(k, v);
        }
        Ok(())
    }

    /// Every parameter, ordered by name.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// A parameter's value.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(String::as_str)
    }

    /// A parameter's value when present and not blank.
    pub(crate) fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.trim().is_empty())
    }

    /// A required, non-blank parameter.
    pub(crate) fn required(&self, name: &str) -> Result<&str, EcsError> {
        self.non_empty(name).ok_or_else(|| EcsError::missing(name))
    }

    /// `true`/`false` (any case); absent is `default`.
    pub(crate) fn bool(&self, name: &str, default: bool) -> Result<bool, EcsError> {
        match self.non_empty(name) {
            None => Ok(default),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(_) => Err(EcsError::invalid(name, "expected true or false")),
        }
    }

    /// An integer within `min..=max`; absent is `default`.
    pub(crate) fn int_in(
        &self,
        name: &str,
        min: u32,
        max: u32,
        default: u32,
    ) -> Result<u32, EcsError> {
        match self.non_empty(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| {
                    EcsError::invalid(name, &format!("expected an integer from {min} to {max}"))
                }),
        }
    }

    /// One of `allowed`; absent is `None`.
    pub(crate) fn one_of<'a>(
        &'a self,
        name: &str,
        allowed: &[&str],
    ) -> Result<Option<&'a str>, EcsError> {
        match self.non_empty(name) {
            None => Ok(None),
            Some(v) if allowed.contains(&v) => Ok(Some(v)),
            Some(_) => Err(EcsError::invalid(
                name,
                &format!("expected one of {}", allowed.join(", ")),
            )),
        }
    }

    /// A `Name.N` list (N = 1..=`max`), ordered by N. Blank entries, N outside 1..=`max`
    /// and non-numeric suffixes are `InvalidParameter`.
    pub(crate) fn indexed(&self, name: &str, max: usize) -> Result<Vec<String>, EcsError> {
        let prefix = format!("{name}.");
        let mut items: Vec<(usize, String)> = Vec::new();
        for (k, v) in self.map.range(prefix.clone()..) {
            let Some(suffix) = k.strip_prefix(&prefix) else {
                break;
            };
            let n = suffix
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| {
                    EcsError::invalid(k, &format!("the index must be from 1 to {max}"))
                })?;
            if v.trim().is_empty() {
                return Err(EcsError::invalid(k, "the value is empty"));
            }
            items.push((n, v.clone()));
        }
        items.sort_by_key(|(n, _)| *n);
        Ok(items.into_iter().map(|(_, v)| v).collect())
    }

    /// A parameter holding a JSON array of strings (e.g. `InstanceIds`), at most `max` items.
    pub(crate) fn json_list(
        &self,
        name: &str,
        max: usize,
    ) -> Result<Option<Vec<String>>, EcsError> {
        let Some(raw) = self.non_empty(name) else {
            return Ok(None);
        };
        let list: Vec<String> = serde_json::from_str(raw).map_err(|_| {
            EcsError::invalid(
                name,
                "expected a JSON array of strings such as [\"i-a\",\"i-b\"]",
            )
        })?;
        if list.len() > max {
            return Err(EcsError::invalid(
                name,
                &format!("at most {max} items are allowed"),
            ));
        }
        Ok(Some(list))
    }

    /// Instance ids the request names in `InstanceId`, `InstanceId.N` or `InstanceIds`, leniently
    /// (for the call log and fault matching; the actions validate strictly).
    pub(crate) fn named_instances(&self) -> Vec<String> {
        let mut ids = Vec::new();
        if let Some(id) = self.non_empty("InstanceId") {
            ids.push(id.to_owned());
        }
        let prefix = "InstanceId.";
        for (k, v) in self.map.range(prefix.to_owned()..) {
            if !k.starts_with(prefix) {
                break;
            }
            if !v.trim().is_empty() {
                ids.push(v.clone());
            }
        }
        if let Some(Ok(list)) = self
            .non_empty("InstanceIds")
            .map(serde_json::from_str::<Vec<String>>)
        {
            ids.extend(list);
        }
        ids
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        let mut p = Params::default();
        p.extend(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
        .unwrap();
        p
    }

    #[test]
    fn duplicates_are_rejected() {
        let mut p = params(&[("A", "1")]);
        let e = p.extend([("A".to_owned(), "2".to_owned())]).unwrap_err();
        assert_eq!(e.code, "InvalidParameter");
    }

    #[test]
    fn required_and_bool() {
        let p = params(&[("DryRun", "TRUE"), ("Force", "yes"), ("Empty", " ")]);
        assert!(p.bool("DryRun", false).unwrap());
        assert!(!p.bool("Absent", false).unwrap());
        assert_eq!(p.bool("Force", false).unwrap_err().code, "InvalidParameter");
        assert_eq!(p.required("Empty").unwrap_err().code, "MissingParameter");
    }

    #[test]
    fn bounded_integers() {
        let p = params(&[("MaxResults", "100"), ("PageSize", "0"), ("X", "a")]);
        assert_eq!(p.int_in("MaxResults", 1, 100, 10).unwrap(), 100);
        assert_eq!(p.int_in("Absent", 1, 100, 10).unwrap(), 10);
        assert!(p.int_in("PageSize", 1, 50, 10).is_err());
        assert!(p.int_in("X", 1, 50, 10).is_err());
    }

    #[test]
    fn indexed_lists_are_ordered_numerically() {
        let p = params(&[
            ("InstanceId.10", "j"),
            ("InstanceId.2", "b"),
            ("InstanceId.1", "a"),
            ("InstanceIdx", "z"),
        ]);
        assert_eq!(p.indexed("InstanceId", 100).unwrap(), ["a", "b", "j"]);
        let over = params(&[("InstanceId.101", "x")]);
        assert!(over.indexed("InstanceId", 100).is_err());
        let bad = params(&[("InstanceId.one", "x")]);
        assert!(bad.indexed("InstanceId", 100).is_err());
    }

    #[test]
    fn json_lists() {
        let p = params(&[("InstanceIds", r#"["i-a","i-b"]"#), ("Bad", "i-a,i-b")]);
        assert_eq!(
            p.json_list("InstanceIds", 100).unwrap().unwrap(),
            ["i-a", "i-b"]
        );
        assert!(p.json_list("InstanceIds", 1).is_err());
        assert!(p.json_list("Bad", 100).is_err());
        assert!(p.json_list("Absent", 100).unwrap().is_none());
    }

    #[test]
    fn named_instances_collects_every_form() {
        let p = params(&[
            ("InstanceId", "i-x"),
            ("InstanceId.1", "i-a"),
            ("InstanceIds", r#"["i-j"]"#),
        ]);
        assert_eq!(p.named_instances(), ["i-x", "i-a", "i-j"]);
    }

    #[test]
    fn one_of() {
        let p = params(&[("Mode", "Fast")]);
        assert!(p.one_of("Mode", &["Slow"]).is_err());
        assert_eq!(p.one_of("Mode", &["Fast"]).unwrap(), Some("Fast"));
    }
}
