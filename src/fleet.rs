//! Fleet scale on ECS's rate limits: the pure core of the fleet gateway.
//!
//! ECS throttles every API action per account and region, counting every caller of the account, so
//! at fleet scale the operator must spend calls as one client, not one client per resource. The
//! pieces sit between the reconciles and the signed ECS client:
//!
//! ```text
//! reconciles ── submit intent (returns at once) ──► Batcher ── seal on token ──► send(key, items)
//!     ▲  outcome by intent id, awaited with a bound      │ per batch key,            │ the gateway's
//!     └──────────────────────────────────────────────────┘ ≤ 100 items, lanes        │ signed client
//! sweep (DescribeInstances over every managed ID) ──► Batcher (background lane)        │ call
//!                                                    AdaptiveLimiter ◄── succeeded / throttled
//!                                                    (account, region, action)
//! ```
//!
//! What exists here (generic over keys and items; no kube and no ECS types, so everything is
//! table-tested under paused tokio time):
//! - [`limits`]: the `--ecs-rate-limit ACTION=RATE` / `ECS_RATE_LIMITS` configuration and its
//!   conservative defaults.
//! - [`limiter`]: [`AdaptiveLimiter`], one adaptive pacing state per key with priority lanes: starts
//!   just under the ceiling, cuts on a throttled answer, holds to the next wall-clock minute, probes
//!   once, climbs back over minutes.
//! - [`batcher`]: [`Batcher`], the coalescing batcher: up to 100 items per batch key, short windows,
//!   sealed only when the limiter grants the token (so a backlog always sends full batches), results
//!   handed back by intent id, idempotent re-submits, replacement while queued, and throttled batches
//!   re-queued whole.
//!
//! On top of them, [`gateway`] is the ECS-specific part: [`Fleet`] with batch keys of credentials
//! identity, region, account, action and write options; `StartInstances` / `StopInstances` with
//! `SuccessFirst`; per-instance codes through the error catalogue; ambiguous writes verified by a
//! read; the account lookup through STS `GetCallerIdentity`; the sweep and its observed-state
//! cache.
//!
//! This is written by hand because no maintained crate does it: `governor` and its relatives enforce
//! a fixed quota (GCRA) per limiter, with no rate that adapts to throttled answers, no hold until a
//! wall-clock minute, no single probe and no priority between waiters.

pub mod batcher;
pub mod gateway;
pub mod limiter;
pub mod limits;

pub use batcher::{
    Answer, BatchKey, BatchObserver, BatchWindows, Batcher, BatcherOptions, Flush, FlushReason,
    IntentCounts, IntentState, Outcome, RefusedReplace, Ticket,
};
pub use gateway::{Fleet, FleetConfig, FleetEcs, Group, Need, Observed};
pub use limiter::{AdaptiveLimiter, Lane, LimiterConfig, LimiterState, Permit, WallClock};
pub use limits::{EcsAction, Rate, RateLimit, RateLimitError, RateLimits};
