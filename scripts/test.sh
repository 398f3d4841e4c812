#!/usr/bin/env bash
# The test command of the README: installs what the tests need, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-test-tools.sh

echo "== cargo test (workspace)"
cargo test --workspace --all-targets

echo "== ECS emulator fidelity: official Alibaba Cloud Python SDKs"
cargo build -p ecs-emulator --bin ecs-emulator
ECS_EMULATOR_BIN="$PWD/target/debug/ecs-emulator" .venv/bin/python -m pytest -q crates/ecs-emulator/tests/sdk

echo "== Helm chart, deploy/ manifests, Dockerfile and the Argo CD health check"
.venv/bin/python -m pytest -q tests/chart
