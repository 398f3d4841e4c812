"""The Argo CD health check (deploy/argocd/health.lua) run by a real Lua 5.1 interpreter, as Argo CD
runs it (gopher-lua, Lua 5.1, base and table libraries only: no string or math library), against
sample objects in every condition state. The docs and the argocd-cm patch carry the same file."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from lupa import lua51

from conftest import DEPLOY, HEALTH_LUA, INSTALL_DOC, ROOT_CRD

SAMPLES = yaml.safe_load((Path(__file__).parent / "argocd_health_samples.yaml").read_text())["cases"]
ARGO_HEALTH = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}

# Runs the script the way Argo CD's util/lua does: `obj` is a global, the chunk's return value is
# the health table, and only the base and table libraries exist (string methods fail too).
SANDBOX = """
local script, obj = ...
local env = { table = table, obj = obj }
for _, name in ipairs({ "assert", "error", "ipairs", "next", "pairs", "pcall", "print", "rawequal",
    "rawget", "rawset", "select", "getmetatable", "setmetatable", "tonumber", "tostring", "type",
    "unpack", "xpcall", "_VERSION" }) do
  env[name] = _G[name]
end
env._G = env
local chunk = assert(loadstring(script, "=health.lua"))
setfenv(chunk, env)
local string_meta = getmetatable("")
local string_index = string_meta.__index
string_meta.__index = nil
local ok, result = pcall(chunk)
string_meta.__index = string_index
if not ok then error(result, 0) end
return result
"""


def health(obj: dict) -> dict:
    lua = lua51.LuaRuntime(unpack_returned_tuples=False, register_eval=False, register_builtins=False)
    run = lua.execute("return function(...) " + SANDBOX + " end")
    result = run(HEALTH_LUA.read_text(), lua.table_from(obj, recursive=True))
    assert lua.eval("type")(result) == "table", f"health.lua returned {result!r}, not a table"
    return {key: result[key] for key in ("status", "message")}


@pytest.mark.parametrize("case", SAMPLES, ids=[c["name"] for c in SAMPLES])
def test_health_of_each_condition_state(case):
    got = health(case["object"])
    assert got["status"] in ARGO_HEALTH
    assert got == case["expect"]


def test_samples_cover_every_argo_status_we_map_to():
    assert {c["expect"]["status"] for c in SAMPLES} == {"Healthy", "Progressing", "Degraded", "Suspended"}


def test_the_sandbox_really_has_no_string_library():
    # If the script used string.format or ("x"):lower(), Argo CD would fail; so must the sandbox.
    lua = lua51.LuaRuntime(unpack_returned_tuples=False, register_eval=False, register_builtins=False)
    run = lua.execute("return function(...) " + SANDBOX + " end")
    for script in ('return { status = string.upper("x") }', 'local s = "x" return { status = s:upper() }'):
        with pytest.raises(lua51.LuaError):
            run(script, lua.table_from({}, recursive=True))


def test_samples_are_valid_ecs_instance_powers():
    if not ROOT_CRD.exists():
        pytest.fail(f"{ROOT_CRD} is missing: the samples cannot be checked against the CRD schema", pytrace=False)
    crd = yaml.safe_load(ROOT_CRD.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    properties = version["schema"]["openAPIV3Schema"]["properties"]
    # metadata is the API server's business; spec and status are the CRD's.
    schema = {"type": "object", "properties": {"spec": properties["spec"], "status": properties["status"]}}
    for case in SAMPLES:
        try:
            jsonschema.validate(case["object"], schema)
        except jsonschema.ValidationError as e:
            pytest.fail(f"sample {case['name']!r} does not match the CRD: {e.message} at {list(e.path)}")


def test_install_doc_shows_exactly_the_tested_script():
    doc = INSTALL_DOC.read_text()
    blocks = re.findall(r"```lua\n(.*?)```", doc, flags=re.S)
    assert blocks, f"{INSTALL_DOC} has no ```lua block"
    assert HEALTH_LUA.read_text() in blocks, (
        "the Lua block in docs/install.md differs from deploy/argocd/health.lua: copy the file into the doc"
    )


def test_argocd_cm_patch_embeds_the_tested_script():
    patch = yaml.safe_load((DEPLOY / "argocd" / "argocd-cm-patch.yaml").read_text())
    assert patch["kind"] == "ConfigMap" and patch["metadata"] == {"name": "argocd-cm", "namespace": "argocd"}
    assert patch["data"] == {"resource.customizations.health.ecspower.dev_EcsInstancePower": HEALTH_LUA.read_text()}
