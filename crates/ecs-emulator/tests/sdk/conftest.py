"""Fixtures for the SDK fidelity tests: each test gets its own ecs-emulator process.

The binary comes from ECS_EMULATOR_BIN (scripts/test.sh sets it). The fixture writes a state
file to a temporary directory, starts `ecs-emulator --listen 127.0.0.1:0 --state FILE`, reads
the first stdout line for the URL, and stops the process at the end of the test.
"""

import json
import os
import subprocess
import time
import urllib.request

import pytest

ACCESS_KEY_ID = "AKSDKTEST"
ACCESS_KEY_SECRET = "sdk-test-secret"
REGION = "cn-hangzhou"
# The account of keys that name none (ecs_emulator::DEFAULT_ACCOUNT_ID).
DEFAULT_ACCOUNT_ID = "1234567890123456"

STATE = f"""
accessKeys: [{{id: {ACCESS_KEY_ID}, secret: {ACCESS_KEY_SECRET}}}]
transitionDelay: 200ms
instances:
  - {{id: i-stopped1, region: {REGION}, status: Stopped}}
  - {{id: i-stopped2, region: {REGION}, status: Stopped}}
  - {{id: i-running1, region: {REGION}, status: Running, tags: {{team: web}}}}
  - {{id: i-locked1, region: {REGION}, status: Stopped, locks: [security]}}
"""


class Emulator:
    """A running emulator: its endpoint (host:port) and admin helpers."""

    def __init__(self, url):
        self.url = url
        self.endpoint = url.removeprefix("http://")

    def admin(self, path):
        with urllib.request.urlopen(f"{self.url}/_emulator/{path}", timeout=5) as resp:
            return json.load(resp)

    def status(self, instance_id):
        return self.admin(f"instances/{instance_id}")["status"]

    def calls(self):
        return self.admin("calls")

    def wait_for_status(self, instance_id, wanted, timeout=10.0):
        """Polls every 20 ms until the instance has the wanted status."""
        deadline = time.monotonic() + timeout
        while True:
            current = self.status(instance_id)
            if current == wanted:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{instance_id} is {current}, expected {wanted}")
            time.sleep(0.02)


@pytest.fixture
def emulator(tmp_path):
    binary = os.environ.get("ECS_EMULATOR_BIN")
    if not binary or not os.access(binary, os.X_OK):
        pytest.fail(
            "ECS_EMULATOR_BIN must point at the built ecs-emulator binary "
            "(scripts/test.sh builds it and sets it)"
        )
    state = tmp_path / "state.yaml"
    state.write_text(STATE)
    proc = subprocess.Popen(
        [binary, "--listen", "127.0.0.1:0", "--state", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "RUST_LOG": "warn"},
    )
    try:
        line = proc.stdout.readline().strip()
        if not line.startswith("listening on http://"):
            proc.kill()
            raise AssertionError(f"unexpected first line {line!r}; stderr: {proc.stderr.read()}")
        yield Emulator(line.removeprefix("listening on "))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
