//! Emulated instances and their power state machine: the public [`Instance`] description
//! (`instance`) and the lazily settled store the actions read and change (`store`).

pub mod instance;
pub(crate) mod store;

pub use instance::{ChargeType, Instance, Status, StoppedMode};
