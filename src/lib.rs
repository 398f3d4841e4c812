//! ecs-power-operator library
pub mod ecs;
