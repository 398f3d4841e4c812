//! ecs-power-operator library
