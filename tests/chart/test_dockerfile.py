"""The Dockerfile and the chart agree (no container engine here to build the image: these checks
are what CI can do). The image runs the binary the chart's args expect, as the UID the chart's
securityContext declares, from a static binary on a minimal base."""

from __future__ import annotations

import json
import re

import yaml

from conftest import CHART, REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()


def instructions(keyword: str) -> list[str]:
    return re.findall(rf"^{keyword}\s+(.+)$", DOCKERFILE, flags=re.M)


def test_multi_stage_with_a_minimal_static_final_stage():
    stages = instructions("FROM")
    assert len(stages) >= 2, "the image is built in a builder stage and copied into a minimal one"
    assert stages[-1].startswith("gcr.io/distroless/static"), stages[-1]
    assert "musl" in DOCKERFILE, "the binary is linked statically against musl"
    assert re.search(r"cargo build --release --locked .*--bin ecs-power-operator", DOCKERFILE)


def test_runs_as_the_non_root_uid_the_chart_declares():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    (user,) = instructions("USER")
    uid, gid = user.split(":")
    assert int(uid) != 0
    assert int(uid) == values["podSecurityContext"]["runAsUser"]
    assert int(gid) == values["podSecurityContext"]["runAsGroup"]


def test_entrypoint_is_the_binary_and_the_default_command_is_run():
    assert json.loads(instructions("ENTRYPOINT")[-1]) == ["/ecs-power-operator"]
    assert json.loads(instructions("CMD")[-1]) == ["run"]
    assert re.search(r"COPY --from=builder \S+ /ecs-power-operator$", DOCKERFILE, flags=re.M)


def test_build_context_leaves_out_build_output_and_tools():
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()}
    assert {".git", "target", ".venv", ".tools"} <= ignored
    # The Cargo workspace must stay in the context.
    assert not {"src", "crates", "Cargo.toml", "Cargo.lock"} & ignored
