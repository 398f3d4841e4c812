//! ecs-emulator
