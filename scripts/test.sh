#!/usr/bin/env bash
# The test command of the README: installs what the tests need, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-test-tools.sh

echo "== cargo test (workspace)"
cargo test --workspace --all-targets

echo "== binaries for the Python tests: ecs-emulator, kube-sandbox, ecs-power-operator"
cargo build --workspace --bins
bin_dir="${CARGO_TARGET_DIR:-$PWD/target}/debug"
export ECS_EMULATOR_BIN="$bin_dir/ecs-emulator" KUBE_SANDBOX_BIN="$bin_dir/kube-sandbox" OPERATOR_BIN="$bin_dir/ecs-power-operator"
for bin in "$ECS_EMULATOR_BIN" "$KUBE_SANDBOX_BIN" "$OPERATOR_BIN"; do
  [ -x "$bin" ] || { echo "error: $bin is missing after cargo build --workspace --bins" >&2; exit 1; }
done

echo "== ECS emulator fidelity: official Alibaba Cloud Python SDKs"
.venv/bin/python -m pytest -q crates/ecs-emulator/tests/sdk

echo "== Helm chart (also installed on kube-sandbox and run), deploy/ manifests, Dockerfile, Argo CD health check"
.venv/bin/python -m pytest -q tests/chart
