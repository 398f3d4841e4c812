#!/usr/bin/env bash
# Installs what the test suite needs beyond cargo, into the repository (nothing global):
#   .venv/   Python venv with the official Alibaba Cloud SDKs, pytest and the manifest validators.
# Idempotent: a second run with everything present only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1 || { echo "error: '$1' is required ($2) but was not found on PATH" >&2; exit 1; }; }
need python3 "the ECS emulator fidelity tests run the official Alibaba Cloud Python SDKs"

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import alibabacloud_ecs20140526, aliyunsdkcore, pytest' 2>/dev/null; then
  echo "setup: creating .venv with the Python test dependencies"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt
fi
echo "setup: python $(.venv/bin/python --version 2>&1 | cut -d' ' -f2) with $(.venv/bin/pip list --disable-pip-version-check 2>/dev/null | grep -ciE 'alibabacloud|aliyun') Alibaba Cloud SDK packages"
