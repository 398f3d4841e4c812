//! The set of served resources: built-ins plus whatever the registered CRDs define. Lookups by
//! group/version/plural for routing, group and version lists for discovery, and the
//! register/unregister steps CRD writes perform.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::builtin::builtin_types;
use crate::resource::{ResourceType, StorageKey};

/// A group as discovery lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupInfo {
    /// Group name ("" for core).
    pub name: String,
    /// Versions, preferred first.
    pub versions: Vec<String>,
}

/// Registered resources.
#[derive(Debug, Clone)]
pub struct Registry {
    types: BTreeMap<(String, String, String), Arc<ResourceType>>,
    builtin_groups: Vec<String>,
    crds: BTreeMap<String, Vec<(String, String, String)>>,
    generation: u64,
}

/// Kubernetes version priority: GA before beta before alpha, higher numbers first, others last.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    fn parse(v: &str) -> Option<(u8, u64, u64)> {
        let rest = v.strip_prefix('v')?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let major: u64 = digits.parse().ok()?;
        let tail = &rest[digits.len()..];
        if tail.is_empty() {
            return Some((3, major, 0));
        }
        let (level, num) = if let Some(n) = tail.strip_prefix("beta") {
            (2, n)
        } else if let Some(n) = tail.strip_prefix("alpha") {
            (1, n)
        } else {
            return None;
        };
        Some((level, major, num.parse().ok()?))
    }
    match (parse(a), parse(b)) {
        (Some(x), Some(y)) => y.cmp(&x),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::with_builtins()
    }
}

impl Registry {
    /// A registry with the built-in kinds only.
    pub fn with_builtins() -> Self {
        let mut r = Self {
            types: BTreeMap::new(),
            builtin_groups: Vec::new(),
            crds: BTreeMap::new(),
            generation: 0,
        };
        for t in builtin_types() {
            if !r.builtin_groups.contains(&t.group) {
                r.builtin_groups.push(t.group.clone());
            }
            r.types.insert(
                (t.group.clone(), t.version.clone(), t.plural.clone()),
                Arc::new(t),
            );
        }
        r
    }

    /// Bumps whenever CRDs change (OpenAPI hashes depend on it).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The resource served at `group/version/plural`.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.types
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }

    /// Any served view of a storage key (to read objects generically).
    pub fn any_view(&self, storage: &StorageKey) -> Option<Arc<ResourceType>> {
        self.types
            .values()
            .filter(|t| &t.storage == storage)
            .min_by(|a, b| {
                (a.group != storage.group)
                    .cmp(&(b.group != storage.group))
                    .then(compare_versions(&a.version, &b.version))
            })
            .cloned()
    }

    /// Groups in discovery order (built-in groups first, then CRD groups by name).
    pub fn groups(&self) -> Vec<GroupInfo> {
        let mut names = self.builtin_groups.clone();
        let mut custom: Vec<String> = self
            .types
            .keys()
            .map(|(g, _, _)| g.clone())
            .filter(|g| !self.builtin_groups.contains(g))
            .collect();
        custom.dedup();
        names.extend(custom);
        names
            .into_iter()
            .map(|name| {
                let mut versions: Vec<String> = self
                    .types
                    .keys()
                    .filter(|(g, _, _)| g == &name)
                    .map(|(_, v, _)| v.clone())
                    .collect();
                versions.dedup();
                versions.sort_by(|a, b| compare_versions(a, b));
                GroupInfo { name, versions }
            })
            .filter(|g| !g.versions.is_empty())
            .collect()
    }

    /// Resources of one group/version.
    pub fn resources(&self, group: &str, version: &str) -> Vec<Arc<ResourceType>> {
        self.types
            .iter()
            .filter(|((g, v, _), _)| g == group && v == version)
            .map(|(_, t)| t.clone())
            .collect()
    }

    /// All resource types.
    pub fn all(&self) -> impl Iterator<Item = &Arc<ResourceType>> {
        self.types.values()
    }

    /// Registers (or replaces) the resources a CRD serves.
    pub fn register_crd(&mut self, crd_name: &str, types: Vec<ResourceType>) {
        self.unregister_crd(crd_name);
        let keys: Vec<_> = types
            .iter()
            .map(|t| (t.group.clone(), t.version.clone(), t.plural.clone()))
            .collect();
        for t in types {
            self.types.insert(
                (t.group.clone(), t.version.clone(), t.plural.clone()),
                Arc::new(t),
            );
        }
        self.crds.insert(crd_name.to_string(), keys);
        self.generation += 1;
    }

    /// Removes a CRD's resources; returns their storage key.
    pub fn unregister_crd(&mut self, crd_name: &str) -> Option<StorageKey> {
        let keys = self.crds.remove(crd_name)?;
        let mut storage = None;
        for k in keys {
            if let Some(t) = self.types.remove(&k) {
                storage = Some(t.storage.clone());
            }
        }
        self.generation += 1;
        storage
    }

    /// Whether `group/plural` is taken by a built-in kind or another CRD.
    pub fn plural_taken(&self, group: &str, plural: &str, by_other_than: &str) -> bool {
        self.types.values().any(|t| {
            t.group == group && t.plural == plural && t.crd.as_deref() != Some(by_other_than)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_priority() {
        let mut v = vec![
            "v1alpha1",
            "v2",
            "v1beta2",
            "v1",
            "v1beta1",
            "foo",
            "v10alpha3",
        ];
        v.sort_by(|a, b| compare_versions(a, b));
        assert_eq!(
            v,
            vec![
                "v2",
                "v1",
                "v1beta2",
                "v1beta1",
                "v10alpha3",
                "v1alpha1",
                "foo"
            ]
        );
    }

    #[test]
    fn crd_registration() {
        let mut r = Registry::with_builtins();
        assert!(r.lookup("", "v1", "secrets").is_some());
        assert_eq!(r.groups()[0].name, "");
        let mut a = ResourceType::builtin("ecspower.dev", "v1alpha1", "things", "Thing");
        a.crd = Some("things.ecspower.dev".into());
        let mut b = a.clone();
        b.version = "v1".into();
        r.register_crd("things.ecspower.dev", vec![a, b]);
        let g = r
            .groups()
            .into_iter()
            .find(|g| g.name == "ecspower.dev")
            .expect("group");
        assert_eq!(g.versions, vec!["v1", "v1alpha1"]);
        assert!(r.plural_taken("ecspower.dev", "things", "other"));
        assert!(!r.plural_taken("ecspower.dev", "things", "things.ecspower.dev"));
        assert_eq!(
            r.unregister_crd("things.ecspower.dev"),
            Some(StorageKey::new("ecspower.dev", "things"))
        );
        assert!(r.lookup("ecspower.dev", "v1", "things").is_none());
        assert!(
            r.any_view(&StorageKey::new("", "events"))
                .is_some_and(|t| t.group.is_empty())
        );
    }
}
