#!/usr/bin/env python3
"""Measures what the per-service traffic counters cost on the packet path.

Compiles a cluster of SERVICES ClusterIP services x 10 endpoints with `nftproxy compile`,
builds three throwaway network namespaces (client 203.0.113.10 -> node -> endpoint pod
198.18.0.10), loads the ruleset into the node and floods one ClusterIP with UDP datagrams
from the client for SECONDS per run. The endpoint pod's veth counts what arrived after DNAT
and forwarding. Runs alternate between the ruleset as compiled and the same ruleset without
the two counting rules (`counter name ... map @...-counters`), ROUNDS times each, and print
packets/s. The sender is one Python process on one core, so the figures are the rate one
sending core reaches through veth, conntrack, NAT and the counting rules together. Not a
timed assertion: figures for BENCHMARKS.md. Needs root; touches nothing outside its own
namespaces, which it deletes at the end.

usage: sudo scripts/counter-cost.py [SERVICES [SECONDS [ROUNDS]]]   (default 10000 5 3)
environment: NFTPROXY (the nftproxy binary; default $CARGO_TARGET_DIR/release/nftproxy,
             then .../debug/nftproxy)
"""
import os
import subprocess
import sys
import tempfile
import time

NS = {"client": "cc-client", "node": "cc-node", "pod": "cc-pod"}
VIP = "198.19.0.1"


def sh(*args, ns=None, check=True, **kw):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    return subprocess.run(cmd, check=check, **kw)


def manifests(services):
    docs = []
    for i in range(services):
        vip = f"198.19.{i // 250}.{i % 250 + 1}"
        docs.append(f"""apiVersion: v1
kind: Service
metadata: {{name: svc-{i}, namespace: bench}}
spec:
  clusterIP: {vip}
  clusterIPs: [{vip}]
  selector: {{app: svc-{i}}}
  ports: [{{name: dns, protocol: UDP, port: 53, targetPort: 8080}}]
""")
        if i == 0:
            addrs = ["198.18.0.10"]
        else:
            addrs = [f"198.18.{1 + (i * 10 + j) // 250 % 200}.{(i * 10 + j) % 250 + 1}"
                     for j in range(10)]
        eps = "".join(f"- {{addresses: [{a}], conditions: {{ready: true}}, nodeName: node-1}}\n"
                      for a in addrs)
        docs.append(f"""apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: svc-{i}-1, namespace: bench, labels: {{kubernetes.io/service-name: svc-{i}}}}}
addressType: IPv4
ports: [{{name: dns, protocol: UDP, port: 8080}}]
endpoints:
{eps}""")
    return "---\n".join(docs)


def nftproxy():
    if os.environ.get("NFTPROXY"):
        return os.environ["NFTPROXY"]
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    for profile in ("release", "debug"):
        path = os.path.join(target, profile, "nftproxy")
        if os.path.exists(path):
            return path
    sys.exit("build nftproxy first (cargo build -p nftproxy) or set NFTPROXY")


def setup():
    for ns in NS.values():
        sh("ip", "netns", "add", ns)
    sh("ip", "link", "add", "c0", "netns", NS["client"], "type", "veth",
       "peer", "name", "n0", "netns", NS["node"])
    sh("ip", "link", "add", "p0", "netns", NS["pod"], "type", "veth",
       "peer", "name", "n1", "netns", NS["node"])
    for ns, dev, addr in [(NS["client"], "c0", "203.0.113.10/24"),
                          (NS["node"], "n0", "203.0.113.1/24"),
                          (NS["node"], "n1", "198.18.0.1/24"),
                          (NS["pod"], "p0", "198.18.0.10/24")]:
        sh("ip", "addr", "add", addr, "dev", dev, ns=ns)
        sh("ip", "link", "set", dev, "up", ns=ns)
    sh("ip", "route", "add", "default", "via", "203.0.113.1", ns=NS["client"])
    sh("ip", "route", "add", "default", "via", "198.18.0.1", ns=NS["pod"])
    sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=NS["node"])
    # The endpoint answers nothing: its port is closed; ICMP errors are rate-limited.
    sh("sysctl", "-qw", "net.ipv4.icmp_ratelimit=1000000", ns=NS["pod"])


def teardown():
    for ns in NS.values():
        sh("ip", "netns", "del", ns, check=False, stderr=subprocess.DEVNULL)


def load(script):
    sh("nft", "flush", "ruleset", ns=NS["node"])
    sh("nft", "-f", script, ns=NS["node"])


def rx_packets():
    out = sh("cat", "/sys/class/net/p0/statistics/rx_packets", ns=NS["pod"],
             capture_output=True, text=True).stdout
    return int(out)


SENDER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((sys.argv[1], 53))
data = b"x" * 64
end = time.monotonic() + float(sys.argv[2])
n = 0
while time.monotonic() < end:
    for _ in range(1000):
        s.send(data)
    n += 1000
print(n)
"""


def run(seconds):
    before = rx_packets()
    start = time.monotonic()
    sent = int(sh(sys.executable, "-c", SENDER, VIP, str(seconds), ns=NS["client"],
                  capture_output=True, text=True).stdout)
    elapsed = time.monotonic() - start
    time.sleep(0.2)
    arrived = rx_packets() - before
    return sent / elapsed, arrived / elapsed


def main():
    services = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 5
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    teardown()
    with tempfile.TemporaryDirectory() as tmp:
        cluster = os.path.join(tmp, "cluster.yaml")
        with open(cluster, "w") as f:
            f.write(manifests(services))
        with_counters = os.path.join(tmp, "with.nft")
        with open(with_counters, "w") as f:
            subprocess.run([nftproxy(), "compile", "--hostname", "node-1", cluster],
                           stdout=f, check=True)
        without = os.path.join(tmp, "without.nft")
        with open(with_counters) as src, open(without, "w") as dst:
            dst.writelines(line for line in src if "counter name" not in line)
        try:
            setup()
            results = {"with counting rules": [], "without counting rules": []}
            for _ in range(rounds):
                for name, script in [("with counting rules", with_counters),
                                     ("without counting rules", without)]:
                    load(script)
                    run(1)  # warm up: conntrack entry, caches
                    results[name].append(run(seconds))
            print(f"{services} services x 10 endpoints, UDP 64-byte payload to {VIP}:53, "
                  f"{rounds} x {seconds:g} s each")
            for name, runs in results.items():
                arrived = sorted(r[1] for r in runs)
                sent = sorted(r[0] for r in runs)
                print(f"{name:>24}: arrived {', '.join(f'{a / 1000:.0f}k' for a in arrived)} "
                      f"packets/s (median {arrived[len(arrived) // 2] / 1000:.0f}k; "
                      f"sent median {sent[len(sent) // 2] / 1000:.0f}k)")
        finally:
            teardown()


if __name__ == "__main__":
    main()
