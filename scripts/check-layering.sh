#!/usr/bin/env bash
# Fails if the pure crates (rules, compiler) depend on an async runtime, the kube client or
# the nftables helper crates; if nftproxy links the GPL-2.0-only helper crate; or if the
# helper crate (or the wire crate it shares with nftproxy) pulls in a dependency whose
# licence cannot be combined with GPL-2.0-only.
set -euo pipefail
status=0
for crate in nftproxy-rules nftproxy-compiler; do
  deps=$(cargo tree --locked -p "$crate" -e normal --prefix none --format '{p}' | awk '{print $1}' | sort -u)
  for forbidden in tokio kube kube-client kube-runtime hyper reqwest libc nftproxy-nft nftproxy-wire; do
    if grep -qx "$forbidden" <<<"$deps"; then
      echo "layering violation: $crate depends on $forbidden" >&2
      status=1
    fi
  done
done
if cargo tree --locked -p nftproxy-rules -e normal --prefix none --format '{p}' | grep -q '^k8s-openapi'; then
  echo "layering violation: nftproxy-rules depends on k8s-openapi" >&2
  status=1
fi

# nftproxy (MIT OR Apache-2.0, links Apache-2.0 crates) runs the helper as a separate
# program; it must never link libnftables through nftproxy-nft, not even in its tests.
if cargo tree --locked -p nftproxy -e normal,build,dev --prefix none --format '{p}' | awk '{print $1}' | grep -qx nftproxy-nft; then
  echo "licence violation: nftproxy depends on nftproxy-nft (GPL-2.0-only, links libnftables)" >&2
  status=1
fi

# The wire crate is shared by both sides under MIT OR Apache-2.0 and depends on std alone.
if [ "$(cargo tree --locked -p nftproxy-wire -e normal,build --prefix none --format '{p}' | grep -c .)" -ne 1 ]; then
  echo "layering violation: nftproxy-wire has dependencies; it must use std alone" >&2
  status=1
fi

# Everything nftproxy-nft builds with must be combinable with GPL-2.0-only: every AND-part
# of each licence expression must offer one of these (Apache-2.0 alone is incompatible).
compatible='(^|[ (])(MIT|MIT-0|BSD-2-Clause|BSD-3-Clause|ISC|Zlib|0BSD|Unlicense|Unicode-3.0|Unicode-DFS-2016|GPL-2.0-only|GPL-2.0-or-later|LGPL-2.1-or-later)([ )]|$)'
while IFS='|' read -r pkg licence; do
  licence=${licence% (\*)}
  ok=1
  [ -n "$licence" ] || ok=0
  while read -r part; do
    [ -z "$part" ] || grep -Eq "$compatible" <<<"$part" || ok=0
  done < <(sed 's/ AND /\n/g' <<<"$licence")
  if [ $ok -eq 0 ]; then
    echo "licence violation: nftproxy-nft builds with $pkg, licence '${licence:-none}' (not GPL-2.0-compatible)" >&2
    status=1
  fi
done < <(cargo tree --locked -p nftproxy-nft -e normal,build --prefix none --format '{p}|{l}' | sort -u)

[ $status -eq 0 ] && echo "layering ok: rules and compiler are free of tokio/kube and the nft crates (and rules of Kubernetes types); nftproxy does not link nftproxy-nft; nftproxy-nft builds only with GPL-2.0-compatible crates"
exit $status
