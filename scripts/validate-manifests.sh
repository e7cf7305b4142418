#!/usr/bin/env bash
# Validates the Kubernetes manifests in deploy/ (or the directory given) against the
# Kubernetes OpenAPI schemas with kubernetes-validate, strictly: unknown fields, wrong types
# and missing required fields fail, naming the file.
#
# kubernetes-validate runs from a Python venv under the cache directory
# (${XDG_CACHE_HOME:-~/.cache}/nftproxy/venv), created on first use; python3-venv is
# apt-installed when missing.
#
# The KubeProxyConfiguration inside the ConfigMap is not a Kubernetes API object, so no schema
# covers it: controller/tests/deploy_manifests.rs (part of `cargo test`) runs
# `nftproxy compile --config <it> examples/cluster.yaml` and refuses any field nftproxy does
# not read, so that a typo there fails too.
#
# Usage: scripts/validate-manifests.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

# The pinned validator, and the Kubernetes versions to validate against: 1.33, the oldest
# nftproxy supports (kube-proxy's nftables mode went GA there; k8s-openapi's v1_33), and
# the newest schema this kubernetes-validate release carries.
KUBERNETES_VALIDATE_VERSION=1.37.0
K8S_VERSIONS=(1.33.0 1.37.0)

dir="${1:-deploy}"
venv="${XDG_CACHE_HOME:-$HOME/.cache}/nftproxy/venv"
validator="$venv/bin/kubernetes-validate"

indent() {
  while IFS= read -r line; do printf '    %s\n' "$line"; done
}

run_as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

ensure_validator() {
  if [ -x "$validator" ] &&
    [ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("kubernetes-validate"))' 2>/dev/null)" = "$KUBERNETES_VALIDATE_VERSION" ]; then
    return
  fi
  command -v python3 >/dev/null || {
    run_as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive run_as_root apt-get install -y -qq python3 >/dev/null
  }
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    # Debian's python3 lacks ensurepip until python3-venv is installed.
    rm -rf "$venv"
    run_as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive run_as_root apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
}

[ -d "$dir" ] || { echo "validate-manifests: $dir is not a directory" >&2; exit 2; }
shopt -s nullglob
# What `kubectl apply -f DIR` reads (it does not recurse without -R).
files=("$dir"/*.yaml "$dir"/*.yml "$dir"/*.json)
[ ${#files[@]} -gt 0 ] || { echo "validate-manifests: no manifests in $dir" >&2; exit 1; }

ensure_validator

failed=()
for file in "${files[@]}"; do
  # A file with no object would pass silently; kubectl would apply nothing from it.
  if ! grep -Eq '^kind:' "$file"; then
    echo "FAIL $file: no Kubernetes object (no top-level kind:)" >&2
    failed+=("$file")
    continue
  fi
  for version in "${K8S_VERSIONS[@]}"; do
    # --quiet prints only problems. A warning fails too: an unknown kind or apiVersion (no
    # schema to check it against) is only a warning to kubernetes-validate.
    if ! output="$("$validator" --strict --quiet --kubernetes-version "$version" "$file" 2>&1)" ||
      [ -n "$output" ]; then
      echo "FAIL $file (Kubernetes $version, strict):" >&2
      indent <<<"$output" >&2
      failed+=("$file")
      break
    fi
  done
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "validate-manifests: ${#failed[@]} of ${#files[@]} manifest files in $dir are invalid:" >&2
  printf '  %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "validate-manifests: ${#files[@]} manifest files in $dir valid against Kubernetes ${K8S_VERSIONS[*]} (kubernetes-validate $KUBERNETES_VALIDATE_VERSION, strict)"
