#!/usr/bin/env bash
# Runs every test: unit, snapshot, property, kernel and packet-flow tests.
# Kernel tests need root; without it they skip (or fail when NFTPROXY_REQUIRE_ROOT_TESTS=1).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "== validating deploy/ manifests against the Kubernetes schemas"
scripts/validate-manifests.sh
export INSTA_UPDATE="${INSTA_UPDATE:-no}"
cargo test --workspace --locked
