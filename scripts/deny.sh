#!/usr/bin/env bash
# Checks every dependency with cargo-deny (deny.toml): licences, bans and sources always;
# RustSec advisories whenever the advisory database (a git repository on github.com) can
# be fetched. Installs cargo-deny under target/tools on first use (about 3 minutes).
# NFTPROXY_REQUIRE_ADVISORIES=1 makes an unreachable database an error.
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.20.2
root=target/tools
deny="$root/bin/cargo-deny"
if ! "$deny" --version 2>/dev/null | grep -qF "$version"; then
  echo "installing cargo-deny $version into $root"
  cargo install cargo-deny --locked --quiet --version "$version" --root "$root"
fi
"$deny" check licenses bans sources
if "$deny" fetch db >/dev/null 2>&1; then
  "$deny" check advisories
else
  echo "cargo-deny: advisories NOT checked: the RustSec database (github.com/RustSec/advisory-db) cannot be fetched from here" >&2
  [ "${NFTPROXY_REQUIRE_ADVISORIES:-0}" != 1 ] || exit 1
fi
