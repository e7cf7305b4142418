#!/usr/bin/env bash
# Runs every test: unit, snapshot, property, kernel and packet-flow tests.
# Kernel tests need root; without it they skip (or fail when NFTPROXY_REQUIRE_ROOT_TESTS=1).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "== validating deploy/ manifests against the Kubernetes schemas"
scripts/validate-manifests.sh
export INSTA_UPDATE="${INSTA_UPDATE:-no}"
# Tests that measure (fuzz executions, soak connections, outage resync) append their figures here.
figures="$(mktemp)"
trap 'rm -f "$figures"' EXIT
status=0
NFTPROXY_FIGURES_FILE="$figures" cargo test --workspace --locked || status=$?
echo "== figures measured by this run"
cat "$figures"
exit "$status"
