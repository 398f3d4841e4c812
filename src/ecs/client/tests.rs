//! HTTP-level tests of the ECS client against a tiny in-test server (filled in next).
