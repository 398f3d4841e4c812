#!/usr/bin/env bash
# The fault-injection soak (README, "Soak test"): two operator binaries with leader election,
# kube-sandbox and ecs-emulator, 1,000 resources and seeded random faults from ECS, Kubernetes,
# the operator itself and its users, all at once; then every invariant is checked and one summary
# printed. `cargo test` runs a one-minute variant of the same test; this script runs the long one
# (release build).
#
#   scripts/soak.sh [--duration 10m] [--resources 1000] [--seed 1] [--bound 3m] [--keep-logs]
#
# --duration   how long faults are injected (s, m or h; default 10m)
# --resources  EcsInstancePower resources (default 1000)
# --seed       the fault sequence (the same seed gives the same faults)
# --bound      how long every resource may take to reach its declared state once faults stop
# --keep-logs  keep the operators' logs and print where they are
set -euo pipefail
cd "$(dirname "$0")/.."

seconds() {
  local value=$1
  case "$value" in
    *h) echo $(( ${value%h} * 3600 )) ;;
    *m) echo $(( ${value%m} * 60 )) ;;
    *s) echo "${value%s}" ;;
    *[!0-9]*|'') echo "error: not a duration: $value (use 90s, 10m or 1h)" >&2; exit 2 ;;
    *) echo "$value" ;;
  esac
}

duration=10m resources=1000 seed=1 bound=3m
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --resources) resources=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --bound) bound=$2; shift 2 ;;
    --keep-logs) export SOAK_KEEP_LOGS=1; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

export SOAK_SECONDS; SOAK_SECONDS=$(seconds "$duration")
export SOAK_CONVERGE_BOUND_SECONDS; SOAK_CONVERGE_BOUND_SECONDS=$(seconds "$bound")
export SOAK_RESOURCES=$resources SOAK_SEED=$seed
echo "== soak: $SOAK_RESOURCES resources, faults for ${SOAK_SECONDS} s, seed $SOAK_SEED (release build)"
exec cargo test --release --test soak -- --nocapture --test-threads 1
