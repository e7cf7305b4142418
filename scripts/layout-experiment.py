#!/usr/bin/env python3
"""Measures how long the kernel takes to load candidate ruleset layouts (`nft -f`).

Generates S services x E endpoints in one of three layouts, loads it into a throwaway
network namespace and prints the wall time. Used to choose the ruleset layout
(docs/ruleset.md, BENCHMARKS.md). Needs root; touches nothing outside its namespace.

usage: scripts/layout-experiment.py {cascade|named|vmapgoto} SERVICES ENDPOINTS
"""
import os
import subprocess
import sys
import tempfile
import time


def endpoint(i, j, e):
    n = i * e + j
    return f"198.18.{n // 250 % 250}.{n % 250 + 1}"


def generate(layout, services, endpoints):
    out = ["table ip layout {"]
    vips = ", ".join(
        f"198.19.{i // 250 % 250}.{i % 250 + 1} . tcp . {80 + i // 62500} : goto svc-{i}"
        for i in range(services))
    out.append(" map service-ips { type ipv4_addr . inet_proto . inet_service : verdict; "
               f"elements = {{ {vips} }}\n }}")
    if layout == "named":
        for i in range(services):
            elems = ", ".join(f"{j} : goto ep-{i}-{j}" for j in range(endpoints))
            out.append(f" map svc-{i}-eps {{ typeof numgen random mod 1 : verdict; "
                       f"elements = {{ {elems} }}\n }}")
    out.append(" chain nat-prerouting { type nat hook prerouting priority dstnat;\n"
               "  ip daddr . meta l4proto . th dport vmap @service-ips\n }")
    for i in range(services):
        if layout == "cascade":
            rules = []
            for j in range(endpoints):
                cond = f"numgen random mod {endpoints - j} == 0 " if j < endpoints - 1 else ""
                rules.append(f"{cond}meta l4proto tcp dnat to {endpoint(i, j, endpoints)}:8080")
            out.append(f" chain svc-{i} {{\n  " + "\n  ".join(rules) + "\n }")
            continue
        if layout == "named":
            out.append(f" chain svc-{i} {{\n  numgen random mod {endpoints} vmap @svc-{i}-eps\n }}")
        else:
            elems = ", ".join(f"{j} : goto ep-{i}-{j}" for j in range(endpoints))
            out.append(f" chain svc-{i} {{\n  numgen random mod {endpoints} vmap {{ {elems} }}\n }}")
        for j in range(endpoints):
            out.append(f" chain ep-{i}-{j} {{\n  meta l4proto tcp dnat to "
                       f"{endpoint(i, j, endpoints)}:8080\n }}")
    out.append("}")
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("cascade", "named", "vmapgoto"):
        sys.exit(__doc__)
    layout, services, endpoints = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    ns = f"nftp-layout-{os.getpid()}"
    with tempfile.NamedTemporaryFile("w", suffix=".nft") as f:
        f.write(generate(layout, services, endpoints))
        f.flush()
        subprocess.run(["ip", "netns", "add", ns], check=True)
        try:
            start = time.monotonic()
            subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", f.name], check=True)
            elapsed = time.monotonic() - start
        finally:
            subprocess.run(["ip", "netns", "del", ns], check=False)
    print(f"{layout} {services} services x {endpoints} endpoints: nft -f took {elapsed:.2f} s")


if __name__ == "__main__":
    main()
