//! The gateway against a fake ECS under paused tokio time: one test per failure case of the fleet
//! design (batches with mixed per-instance codes, throttling, ambiguous answers, dropped
//! connections, replaced intents, option keys, shared limiters, sweep misses).

use super::*;
