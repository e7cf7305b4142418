#!/usr/bin/env bash
# Fails if the pure crates (rules, compiler) depend on an async runtime or the kube client.
set -euo pipefail
status=0
for crate in nftproxy-rules nftproxy-compiler; do
  deps=$(cargo tree --locked -p "$crate" -e normal --prefix none --format '{p}' | awk '{print $1}' | sort -u)
  for forbidden in tokio kube kube-client kube-runtime hyper reqwest libc; do
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
[ $status -eq 0 ] && echo "layering ok: rules and compiler are free of tokio/kube (and rules of Kubernetes types)"
exit $status
