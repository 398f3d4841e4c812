//! Who may control which instance: the two rules checked before a resource observes its instance
//! and again right before every write call (a single call or a batch entry).
//!
//! - [`claims`]: one owner per instance ID across every watched namespace (the oldest resource,
//!   ties by namespace/name); every other resource naming that ID makes no ECS call.
//! - [`policy`]: the `EcsPowerAccessPolicy` decision for resources on the operator's own
//!   credentials: deny by default, allow when any valid rule selects the namespace (by name or
//!   labels), the region, the instance (by ID, tags or any) and the action.
//!
//! Both are pure (no Kubernetes or ECS types, no I/O) and table-tested; the controller's
//! `access` guard feeds them from its caches.

pub mod claims;
pub mod policy;
