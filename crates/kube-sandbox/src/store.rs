//! The object store: one ordered map per storage key (group, plural) keyed by namespace/name,
//! a single monotonically increasing resourceVersion, a bounded history of changes (watch
//! resume; older versions answer 410 Gone) and a broadcast of every change to the open watches
//! (a slow watch lags and is closed; writers never wait for it). All of it sits behind one
//! lock, so each REST write is atomic and changes reach watchers in resourceVersion order.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde_json::Value;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::object::{self, ObjectKey};
use crate::patch::apply::Owners;
use crate::registry::Registry;
use crate::resource::StorageKey;

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Created.
    Added,
    /// Updated.
    Modified,
    /// Removed.
    Deleted,
    /// The whole resource went away (its CRD was deleted): watches on it end.
    ResourceRemoved,
}

/// One change, as recorded in history and broadcast to watches.
#[derive(Debug, Clone)]
pub struct Change {
    /// resourceVersion of the change.
    pub rv: u64,
    /// Which resource.
    pub storage: StorageKey,
    /// What happened.
    pub kind: ChangeKind,
    /// The object after the change (for Deleted: the last state, with the deletion's version).
    pub object: Arc<Value>,
    /// The object before the change (Modified only), for selector transitions.
    pub previous: Option<Arc<Value>>,
}

/// A stored object with its server-side-apply bookkeeping.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The object, stored form.
    pub object: Arc<Value>,
    /// Fields each apply manager set last.
    pub owners: Owners,
}

/// Everything behind the store lock.
#[derive(Debug)]
pub struct State {
    rv: u64,
    /// Served resources (CRD writes change it under the same lock).
    pub registry: Registry,
    objects: HashMap<StorageKey, BTreeMap<ObjectKey, Entry>>,
    history: VecDeque<Arc<Change>>,
    history_capacity: usize,
    floor: u64,
    tx: broadcast::Sender<Arc<Change>>,
}

impl State {
    /// The current resourceVersion.
    pub fn rv(&self) -> u64 {
        self.rv
    }

    /// The oldest resourceVersion a watch may resume from; older ones are expired (410).
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// One object.
    pub fn get(&self, storage: &StorageKey, key: &ObjectKey) -> Option<&Entry> {
        self.objects.get(storage).and_then(|m| m.get(key))
    }

    /// Objects of a resource in key order, optionally one namespace only, starting after `after`.
    pub fn range<'a>(
        &'a self,
        storage: &StorageKey,
        namespace: Option<&'a str>,
        after: Option<&ObjectKey>,
    ) -> Box<dyn Iterator<Item = (&'a ObjectKey, &'a Entry)> + 'a> {
        let Some(map) = self.objects.get(storage) else {
            return Box::new(std::iter::empty());
        };
        let start = match (after, namespace) {
            (Some(a), _) => std::ops::Bound::Excluded(a.clone()),
            (None, Some(ns)) => std::ops::Bound::Included(ObjectKey::new(ns, "")),
            (None, None) => std::ops::Bound::Unbounded,
        };
        let it = map.range((start, std::ops::Bound::Unbounded));
        match namespace {
            Some(ns) => Box::new(it.take_while(move |(k, _)| k.namespace == ns)),
            None => Box::new(it),
        }
    }

    /// Whether any object lives in namespace `ns`.
    pub fn namespace_has_objects(&self, ns: &str) -> bool {
        self.objects
            .keys()
            .any(|sk| self.range(sk, Some(ns), None).next().is_some())
    }

    /// Storage keys that hold objects.
    pub fn storage_keys(&self) -> Vec<StorageKey> {
        self.objects.keys().cloned().collect()
    }

    fn record(&mut self, change: Change) {
        let change = Arc::new(change);
        if change.kind != ChangeKind::ResourceRemoved {
            self.history.push_back(change.clone());
            while self.history.len() > self.history_capacity {
                if let Some(old) = self.history.pop_front() {
                    self.floor = old.rv;
                }
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(change);
    }

    /// Stores `obj` (stored form) at a new resourceVersion and records Added or Modified.
    pub fn put(&mut self, storage: &StorageKey, mut obj: Value, owners: Owners) -> Arc<Value> {
        self.rv += 1;
        let rv = self.rv;
        object::meta_mut(&mut obj).insert("resourceVersion".into(), Value::String(rv.to_string()));
        let key = ObjectKey::of(&obj);
        let obj = Arc::new(obj);
        let previous = self
            .objects
            .entry(storage.clone())
            .or_default()
            .insert(
                key,
                Entry {
                    object: obj.clone(),
                    owners,
                },
            )
            .map(|e| e.object);
        let kind = if previous.is_some() {
            ChangeKind::Modified
        } else {
            ChangeKind::Added
        };
        self.record(Change {
            rv,
            storage: storage.clone(),
            kind,
            object: obj.clone(),
            previous,
        });
        obj
    }

    /// Removes an object at a new resourceVersion and records Deleted; returns its last state.
    pub fn remove(&mut self, storage: &StorageKey, key: &ObjectKey) -> Option<Arc<Value>> {
        let entry = self.objects.get_mut(storage)?.remove(key)?;
        self.rv += 1;
        let mut last = (*entry.object).clone();
        object::meta_mut(&mut last)
            .insert("resourceVersion".into(), Value::String(self.rv.to_string()));
        let last = Arc::new(last);
        self.record(Change {
            rv: self.rv,
            storage: storage.clone(),
            kind: ChangeKind::Deleted,
            object: last.clone(),
            previous: None,
        });
        Some(last)
    }

    /// Removes every object of a resource (its CRD is gone) and ends the watches on it.
    pub fn remove_resource(&mut self, storage: &StorageKey) -> usize {
        let keys: Vec<ObjectKey> = self
            .range(storage, None, None)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &keys {
            self.remove(storage, k);
        }
        self.objects.remove(storage);
        self.record(Change {
            rv: self.rv,
            storage: storage.clone(),
            kind: ChangeKind::ResourceRemoved,
            object: Arc::new(Value::Null),
            previous: None,
        });
        keys.len()
    }

    /// Changes after `rv` (oldest first), or `None` when `rv` is older than the history keeps.
    pub fn changes_since(&self, rv: u64) -> Option<impl Iterator<Item = &Arc<Change>>> {
        if rv < self.floor {
            return None;
        }
        let start = self.history.partition_point(|c| c.rv <= rv);
        Some(self.history.range(start..))
    }

    /// A receiver of every future change (subscribe under the lock to start without a gap).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.tx.subscribe()
    }

    /// Forgets the history: every resourceVersion handed out so far becomes expired.
    pub fn compact(&mut self) {
        self.rv += 1;
        self.floor = self.rv;
        self.history.clear();
    }
}

/// The store shared by the HTTP layer and the admin hooks.
#[derive(Debug)]
pub struct Store {
    state: RwLock<State>,
    breaker: Mutex<CancellationToken>,
}

impl Store {
    /// An empty store with the built-in kinds registered.
    pub fn new(history_capacity: usize, broadcast_capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(broadcast_capacity.max(16));
        Self {
            state: RwLock::new(State {
                rv: 0,
                registry: Registry::with_builtins(),
                objects: HashMap::new(),
                history: VecDeque::new(),
                history_capacity: history_capacity.max(1),
                floor: 0,
                tx,
            }),
            breaker: Mutex::new(CancellationToken::new()),
        }
    }

    /// Shared access.
    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Exclusive access.
    pub fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The token that ends the watches open now (cancelled by [`Store::break_watches`]).
    pub fn watch_breaker(&self) -> CancellationToken {
        self.breaker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Ends every open watch.
    pub fn break_watches(&self) {
        let mut guard = self.breaker.lock().unwrap_or_else(PoisonError::into_inner);
        guard.cancel();
        *guard = CancellationToken::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sk() -> StorageKey {
        StorageKey::new("", "configmaps")
    }

    fn cm(ns: &str, name: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": ns}})
    }

    #[test]
    fn versions_history_and_ranges() {
        let store = Store::new(3, 16);
        let mut st = store.write();
        let mut rx = st.subscribe();
        let a = st.put(&sk(), cm("a", "x"), Owners::default());
        assert_eq!(object::resource_version(&a), "1");
        st.put(&sk(), cm("b", "y"), Owners::default());
        st.put(&sk(), cm("a", "z"), Owners::default());
        st.put(&sk(), cm("a", "x"), Owners::default());
        assert_eq!(st.rv(), 4);
        let names: Vec<_> = st
            .range(&sk(), Some("a"), None)
            .map(|(k, _)| k.name.clone())
            .collect();
        assert_eq!(names, vec!["x", "z"]);
        let after: Vec<_> = st
            .range(&sk(), None, Some(&ObjectKey::new("a", "x")))
            .map(|(k, _)| k.name.clone())
            .collect();
        assert_eq!(after, vec!["z", "y"]);
        // Capacity 3: change 1 fell out, so resuming from 0 is expired, from 1 is fine.
        assert!(st.changes_since(0).is_none());
        let since: Vec<u64> = st.changes_since(1).expect("kept").map(|c| c.rv).collect();
        assert_eq!(since, vec![2, 3, 4]);
        assert_eq!(st.changes_since(3).expect("kept").count(), 1);
        let removed = st
            .remove(&sk(), &ObjectKey::new("a", "x"))
            .expect("existed");
        assert_eq!(object::resource_version(&removed), "5");
        assert_eq!(rx.try_recv().map(|c| c.kind).ok(), Some(ChangeKind::Added));
        assert!(st.namespace_has_objects("a"));
        st.compact();
        assert!(st.changes_since(5).is_none());
        assert!(st.changes_since(6).is_some());
        assert_eq!(st.remove_resource(&sk()), 2);
        assert!(!st.namespace_has_objects("a"));
    }

    #[test]
    fn a_slow_watcher_never_blocks_writers() {
        let store = Store::new(1000, 16);
        let mut slow = store.read().subscribe();
        for i in 0..100 {
            store
                .write()
                .put(&sk(), cm("a", &format!("n{i}")), Owners::default());
        }
        assert_eq!(store.read().rv(), 100);
        // The receiver fell behind the broadcast buffer: it is told so (and its watch ends).
        assert!(matches!(
            slow.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(_))
        ));
    }

    #[test]
    fn breaking_watches_replaces_the_token() {
        let store = Store::new(10, 16);
        let t = store.watch_breaker();
        store.break_watches();
        assert!(t.is_cancelled());
        assert!(!store.watch_breaker().is_cancelled());
    }
}
