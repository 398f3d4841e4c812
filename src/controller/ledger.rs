//! The ledger of observations, the first step of a reconcile: why a reconcile that nothing relevant
//! triggered makes no ECS call.
//!
//! kube-runtime reconciles a resource on every change to it, including the status patch this
//! operator just wrote, label edits and relists. None of those can change what ECS says, so the
//! reconciler first asks the ledger: *has the generation or the credentials changed since the
//! last observation, or is the next observation due?* If not, it requeues for the remaining time and
//! does not call ECS (a reconcile triggered by the operator's own status write never makes an ECS
//! call). Its only API call then is writing a status that the last observation produced but
//! could not write (the entry keeps it), so a failing status patch loses neither the backoff nor
//! `lastAction`.
//!
//! The ledger is in memory: after a restart every resource is observed once, which is the same
//! cost as one resync. Entries of deleted resources are dropped when the watch reports the delete
//! and after every (re)list.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kube::runtime::reflector::ObjectRef;
use tokio::time::Instant;

use crate::api::{EcsInstancePower, EcsInstancePowerStatus};
use crate::compact::Compact;

/// What an observation depended on: a change in any part makes the next reconcile observe again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs {
    /// `metadata.uid`: a resource deleted and created again under the same name is another object
    /// (its generation starts at 1 again), and [`ObjectRef`] equality ignores the uid.
    pub uid: Option<String>,
    /// `metadata.generation` (spec changes).
    pub generation: Option<i64>,
    /// The referenced Secret's `resourceVersion` (`None` when there is no reference or the Secret
    /// cache has not synced yet, so a cache filling after a restart is not a "change"; `Some("")`
    /// when the referenced Secret does not exist).
    pub credentials: Option<String>,
    /// The referenced EcsPowerSchedule's `resourceVersion` (`None` without a reference; `Some("")`
    /// when it does not exist), so a created or changed schedule is observed at once.
    pub schedule: Option<String>,
    /// What the instance's claim and the access policy depend on (the owner, the policy's uid and
    /// generation, the namespace's labels), hashed, so a change of either is observed at once.
    pub access: u64,
}

#[derive(Debug)]
struct Entry {
    inputs: Inputs,
    due: Instant,
    /// A status the last reconcile computed but could not write (the patch failed): written by
    /// the next reconcile without calling ECS, and the base of the next report, so that backoff
    /// and `lastAction` are not lost with it.
    unwritten: Option<Box<EcsInstancePowerStatus>>,
}

/// A status this replica wrote that the controller's cache may not hold yet.
#[derive(Debug)]
struct Written {
    /// The object it was written to (a resource created again under the same name is another).
    uid: Option<String>,
    /// The object's resourceVersion after the write.
    resource_version: Option<String>,
    status: Box<EcsInstancePowerStatus>,
}

/// Per-resource record of the last observation: its inputs, when the next one is due, and a
/// status it could not write; and statuses written but not yet seen by the cache.
#[derive(Debug, Default)]
pub struct Ledger {
    entries: Mutex<HashMap<ObjectRef<EcsInstancePower>, Entry>>,
    /// The controller's cache sees a status write only when the watch delivers it (seconds later
    /// after a broken watch): a reconcile in between must build on what was written, not on the
    /// older cached status, or it would send the same write call again. Held until the cache has
    /// caught up, so it costs memory only for that short while.
    written: Mutex<HashMap<ObjectRef<EcsInstancePower>, Written>>,
}

/// Whether the cached object (`cached` resourceVersion) holds a write that answered `written`.
/// resourceVersions are integers on every etcd-backed API server (and kube-sandbox), compared as
/// such; should one not be, only the same version counts as caught up (the written status then
/// stays the base until the next write replaces it, which is still never older than the cache).
fn caught_up(cached: Option<&str>, written: Option<&str>) -> bool {
    match (cached, written) {
        (Some(cached), Some(written)) => match (cached.parse::<u64>(), written.parse::<u64>()) {
            (Ok(cached), Ok(written)) => cached >= written,
            _ => cached == written,
        },
        // The write's answer had no version: nothing to wait for.
        (_, None) => true,
        (None, Some(_)) => false,
    }
}

/// Whether a reconcile is due to observe ECS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// Nothing relevant changed and the next observation is not due: requeue after this long.
    Later(Duration),
    /// Observe now. `credentials_changed` is true when the referenced Secret changed since the last
    /// observation of the same generation (it lifts a retry gate).
    Now {
        /// The referenced Secret changed since the last observation.
        credentials_changed: bool,
    },
}

impl Ledger {
    /// Decides whether a reconcile of `key` with these inputs should observe ECS.
    pub fn check(&self, key: &ObjectRef<EcsInstancePower>, inputs: &Inputs, now: Instant) -> Due {
        let entries = self.lock();
        match entries.get(key) {
            Some(entry) if entry.inputs == *inputs && now < entry.due => {
                Due::Later(entry.due - now)
            }
            Some(entry) => Due::Now {
                credentials_changed: entry.inputs.uid == inputs.uid
                    && entry.inputs.generation == inputs.generation
                    && entry.inputs.credentials.is_some()
                    && inputs.credentials.is_some()
                    && entry.inputs.credentials != inputs.credentials,
            },
            None => Due::Now {
                credentials_changed: false,
            },
        }
    }

    /// Whether `key` has an entry recorded with these same inputs: a reconcile then comes from the
    /// schedule (or from news about the instance), not from a new resource, a new generation or
    /// changed credentials.
    pub fn scheduled(&self, key: &ObjectRef<EcsInstancePower>, inputs: &Inputs) -> bool {
        self.lock()
            .get(key)
            .is_some_and(|entry| entry.inputs == *inputs)
    }

    /// Whether `key` has a status a previous reconcile could not write.
    pub fn has_unwritten(&self, key: &ObjectRef<EcsInstancePower>) -> bool {
        self.lock().get(key).is_some_and(|e| e.unwritten.is_some())
    }

    /// Records an observation made with `inputs`; the next one is due at `due`.
    pub fn record(&self, key: ObjectRef<EcsInstancePower>, inputs: Inputs, due: Instant) {
        let mut entries = self.lock();
        match entries.get_mut(&key) {
            // In place, keeping equal inputs: every resource is recorded again at every resync.
            Some(entry) => {
                if entry.inputs != inputs {
                    entry.inputs = inputs;
                }
                entry.due = due;
                entry.unwritten = None;
            }
            None => {
                entries.insert(
                    key,
                    Entry {
                        inputs,
                        due,
                        unwritten: None,
                    },
                );
            }
        }
    }

    /// Records an observation whose status could not be written; see [`Ledger::unwritten`].
    pub fn record_unwritten(
        &self,
        key: ObjectRef<EcsInstancePower>,
        inputs: Inputs,
        due: Instant,
        status: EcsInstancePowerStatus,
    ) {
        let unwritten = Some(Box::new(status));
        self.lock().insert(
            key,
            Entry {
                inputs,
                due,
                unwritten,
            },
        );
    }

    /// The status that a previous reconcile could not write, if any. It stays in the ledger
    /// (a reconcile that builds on it may end early, at a failed Secret read or a closed write
    /// gate, and must not lose it: it can be the only record of a write call ECS received) until
    /// a status is written ([`Ledger::record`], [`Ledger::clear_unwritten`]) or a newer one
    /// replaces it.
    pub fn unwritten(&self, key: &ObjectRef<EcsInstancePower>) -> Option<EcsInstancePowerStatus> {
        self.lock()
            .get(key)
            .and_then(|e| e.unwritten.as_deref().cloned())
    }

    /// The unwritten status was written (by a reconcile that had nothing new to observe).
    pub fn clear_unwritten(&self, key: &ObjectRef<EcsInstancePower>) {
        if let Some(entry) = self.lock().get_mut(key) {
            entry.unwritten = None;
        }
    }

    /// Remembers a status written to `obj`, which answered with `resource_version`.
    pub fn record_written(
        &self,
        obj: &EcsInstancePower,
        resource_version: Option<String>,
        status: EcsInstancePowerStatus,
    ) {
        let written = Written {
            uid: obj.metadata.uid.clone(),
            resource_version,
            status: Box::new(status),
        };
        self.written_lock()
            .insert(ObjectRef::from_obj(obj), written);
    }

    /// The status last written to `obj` if the cached `obj` does not hold it yet; dropped once it
    /// does (or when `obj` is another object under the same name).
    pub fn written_ahead_of(&self, obj: &EcsInstancePower) -> Option<EcsInstancePowerStatus> {
        let key = ObjectRef::from_obj(obj);
        let mut written = self.written_lock();
        let entry = written.get(&key)?;
        let cached = obj.metadata.resource_version.as_deref();
        if entry.uid != obj.metadata.uid || caught_up(cached, entry.resource_version.as_deref()) {
            written.remove(&key);
            return None;
        }
        Some((*entry.status).clone())
    }

    /// The watch delivered `obj`: a written status it now holds is no longer kept (most resources
    /// are not reconciled again after their status write, so this is where the memory is freed).
    pub fn seen(&self, obj: &EcsInstancePower) {
        let key = ObjectRef::from_obj(obj);
        let mut written = self.written_lock();
        if let Some(entry) = written.get(&key)
            && (entry.uid != obj.metadata.uid
                || caught_up(
                    obj.metadata.resource_version.as_deref(),
                    entry.resource_version.as_deref(),
                ))
        {
            written.remove(&key);
            // Held for a moment each, but a fleet's worth after a fleet's worth of writes.
            written.compact();
        }
    }

    /// How many written statuses are kept (the cache has not delivered them yet).
    #[cfg(test)]
    fn written_len(&self) -> usize {
        self.written_lock().len()
    }

    /// Forgets one resource (it was deleted).
    pub fn forget(&self, key: &ObjectRef<EcsInstancePower>) {
        let mut entries = self.lock();
        entries.remove(key);
        entries.compact();
        drop(entries);
        let mut written = self.written_lock();
        written.remove(key);
        written.compact();
    }

    /// Keeps only the resources for which `keep` is true (called with the controller's store after
    /// every list, so resources deleted while the watch was down do not accumulate).
    pub fn retain(&self, keep: impl Fn(&ObjectRef<EcsInstancePower>) -> bool) {
        let mut entries = self.lock();
        entries.retain(|k, _| keep(k));
        entries.compact();
        drop(entries);
        let mut written = self.written_lock();
        written.retain(|k, _| keep(k));
        written.compact();
    }

    fn written_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<EcsInstancePower>, Written>> {
        // Single inserts and removes: a poisoned lock leaves the map consistent.
        self.written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<EcsInstancePower>, Entry>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts and
        // removes), so a poisoned lock is still usable.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ObjectRef<EcsInstancePower> {
        ObjectRef::new(name).within("team-a")
    }

    fn inputs(generation: i64, credentials: Option<&str>) -> Inputs {
        Inputs {
            uid: Some("uid-1".to_string()),
            generation: Some(generation),
            credentials: credentials.map(str::to_string),
            schedule: None,
            access: 0,
        }
    }

    #[test]
    fn first_reconcile_observes() {
        let ledger = Ledger::default();
        let now = Instant::now();
        assert_eq!(
            ledger.check(&key("a"), &inputs(1, None), now),
            Due::Now {
                credentials_changed: false
            }
        );
    }

    #[test]
    fn own_status_write_is_not_due() {
        let ledger = Ledger::default();
        let now = Instant::now();
        ledger.record(key("a"), inputs(1, None), now + Duration::from_secs(300));
        // The status patch triggers a reconcile with the same generation a moment later.
        let later = now + Duration::from_millis(50);
        assert_eq!(
            ledger.check(&key("a"), &inputs(1, None), later),
            Due::Later(Duration::from_millis(299_950))
        );
        // Another resource is unaffected.
        assert!(matches!(
            ledger.check(&key("b"), &inputs(1, None), later),
            Due::Now { .. }
        ));
    }

    #[test]
    fn due_time_spec_change_and_secret_change_observe() {
        let ledger = Ledger::default();
        let now = Instant::now();
        ledger.record(
            key("a"),
            inputs(1, Some("10")),
            now + Duration::from_secs(60),
        );
        assert_eq!(
            ledger.check(
                &key("a"),
                &inputs(1, Some("10")),
                now + Duration::from_secs(60)
            ),
            Due::Now {
                credentials_changed: false
            },
            "due"
        );
        assert_eq!(
            ledger.check(&key("a"), &inputs(2, Some("10")), now),
            Due::Now {
                credentials_changed: false
            },
            "spec changed"
        );
        assert_eq!(
            ledger.check(&key("a"), &inputs(1, Some("11")), now),
            Due::Now {
                credentials_changed: true
            },
            "Secret changed"
        );
        assert_eq!(
            ledger.check(&key("a"), &inputs(1, Some("")), now),
            Due::Now {
                credentials_changed: true
            },
            "Secret deleted"
        );
    }

    #[test]
    fn a_resource_recreated_under_the_same_name_observes() {
        let ledger = Ledger::default();
        let now = Instant::now();
        ledger.record(key("a"), inputs(1, None), now + Duration::from_secs(300));
        // Deleted, then created again: same name, generation 1 again, another uid.
        let recreated = Inputs {
            uid: Some("uid-2".to_string()),
            ..inputs(1, None)
        };
        assert_eq!(
            ledger.check(&key("a"), &recreated, now + Duration::from_millis(50)),
            Due::Now {
                credentials_changed: false
            }
        );
    }

    #[test]
    fn a_secret_cache_filling_after_a_restart_is_not_a_credentials_change() {
        let ledger = Ledger::default();
        let now = Instant::now();
        ledger.record(key("a"), inputs(1, None), now + Duration::from_secs(1800));
        assert_eq!(
            ledger.check(
                &key("a"),
                &inputs(1, Some("4711")),
                now + Duration::from_secs(1)
            ),
            Due::Now {
                credentials_changed: false
            }
        );
    }

    #[test]
    fn an_unwritten_status_is_kept_until_a_status_is_written() {
        let ledger = Ledger::default();
        let due = Instant::now() + Duration::from_secs(60);
        let status = EcsInstancePowerStatus {
            instance_status: Some("Starting".into()),
            ..Default::default()
        };
        ledger.record_unwritten(key("a"), inputs(1, None), due, status.clone());
        assert!(matches!(
            ledger.check(&key("a"), &inputs(1, None), Instant::now()),
            Due::Later(_)
        ));
        // Read as often as reconciles build on it: a reconcile that ends early loses nothing.
        assert_eq!(ledger.unwritten(&key("a")), Some(status.clone()));
        assert_eq!(ledger.unwritten(&key("a")), Some(status.clone()));
        assert!(ledger.has_unwritten(&key("a")));
        ledger.clear_unwritten(&key("a"));
        assert_eq!(ledger.unwritten(&key("a")), None);
        // An observation recorded after its status was written drops it too.
        ledger.record_unwritten(key("a"), inputs(1, None), due, status.clone());
        ledger.record(key("a"), inputs(1, None), due);
        assert_eq!(ledger.unwritten(&key("a")), None);
    }

    #[test]
    fn retain_and_forget_drop_deleted_resources() {
        let ledger = Ledger::default();
        let now = Instant::now();
        let due = now + Duration::from_secs(60);
        ledger.record(key("a"), inputs(1, None), due);
        ledger.record(key("b"), inputs(1, None), due);
        ledger.retain(|k| k.name != "b");
        assert!(matches!(
            ledger.check(&key("a"), &inputs(1, None), now),
            Due::Later(_)
        ));
        assert_eq!(
            ledger.check(&key("b"), &inputs(1, None), now),
            Due::Now {
                credentials_changed: false
            },
            "a dropped entry observes like a new resource"
        );
        ledger.forget(&key("a"));
        assert!(matches!(
            ledger.check(&key("a"), &inputs(1, None), now),
            Due::Now { .. }
        ));
    }

    #[test]
    fn the_cache_has_caught_up_with_a_write_at_or_after_its_version() {
        assert!(caught_up(Some("12"), Some("12")));
        assert!(caught_up(Some("13"), Some("12")));
        assert!(!caught_up(Some("11"), Some("12")));
        // Numbers are compared as numbers, not as text.
        assert!(!caught_up(Some("9"), Some("10")));
        assert!(!caught_up(None, Some("10")));
        assert!(caught_up(Some("5"), None));
        // Not numbers: only the same version counts.
        assert!(caught_up(Some("abc"), Some("abc")));
        assert!(!caught_up(Some("abd"), Some("abc")));
    }

    #[test]
    fn a_written_status_is_the_base_until_the_cache_holds_it() {
        let ledger = Ledger::default();
        let mut obj: EcsInstancePower = serde_json::from_value(serde_json::json!({
            "apiVersion": "ecspower.dev/v1alpha1", "kind": "EcsInstancePower",
            "metadata": {"name": "a", "namespace": "ns", "uid": "u1", "resourceVersion": "7"},
            "spec": {"instanceId": "i-a", "regionId": "cn-hangzhou", "desiredState": "Running"}
        }))
        .unwrap();
        let written = EcsInstancePowerStatus {
            instance_status: Some("Starting".into()),
            ..EcsInstancePowerStatus::default()
        };
        ledger.record_written(&obj, Some("9".into()), written.clone());
        assert_eq!(ledger.written_ahead_of(&obj), Some(written.clone()));
        // Another object under the same name: not its status.
        let mut other = obj.clone();
        other.metadata.uid = Some("u2".into());
        assert_eq!(ledger.written_ahead_of(&other), None);
        ledger.record_written(&obj, Some("9".into()), written);
        obj.metadata.resource_version = Some("9".into());
        assert_eq!(ledger.written_ahead_of(&obj), None);
        // Dropped once caught up.
        obj.metadata.resource_version = Some("7".into());
        assert_eq!(ledger.written_ahead_of(&obj), None);
        // The watch delivering the written version frees it without a reconcile.
        ledger.record_written(&obj, Some("9".into()), EcsInstancePowerStatus::default());
        ledger.seen(&obj);
        assert_eq!(ledger.written_len(), 1, "the cache is still behind");
        obj.metadata.resource_version = Some("10".into());
        ledger.seen(&obj);
        assert_eq!(ledger.written_len(), 0);
    }
}
