"""ADD and DEL latency of a 3-plugin CNI chain through multinet.cni.runner, real plugins.

The chain: bridge with host-local IPAM, tuning (MTU and a MAC passed as runtimeConfig), and
bandwidth (ingress and egress shaping), cniVersion 1.0.0, from /opt/cni/bin or /usr/lib/cni.
Every round gets a new namespace (`ip netns add`, not timed), then ADD is timed (cache intent
write, 3 plugin executions (host-local runs inside bridge), result write), then DEL (3 plugin
executions in reverse, cache removal). One warm-up round is not counted. Prints p50/p95/max
per command in ms.

Usage: bench/cni_chain.py [--rounds N] (needs root). Addresses: 198.51.100.0/24 on a bridge of
its own (deleted at the end), host-local leases and the cache in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from multinet.cni import runner
from multinet.cni.config import Chain, parse_chain
from multinet.cni.invocation import PodRef, RuntimeArgs

BIN_DIRS = ("/opt/cni/bin", "/usr/lib/cni")
POD = PodRef(namespace="bench", name="pod", uid="bench-uid")


def sh(cmd: str) -> None:
    subprocess.run(cmd, shell=True, check=True, capture_output=True)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def bench_chain(bridge: str, data_dir: Path) -> Chain:
    return parse_chain(
        {
            "cniVersion": "1.0.0",
            "name": f"bench{secrets.token_hex(3)}",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": bridge,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": str(data_dir),
                        "subnet": "198.51.100.0/24",
                    },
                },
                {"type": "tuning", "mtu": 1400, "capabilities": {"mac": True}},
                {
                    "type": "bandwidth",
                    "ingressRate": 100_000_000,
                    "ingressBurst": 1_000_000,
                    "egressRate": 100_000_000,
                    "egressBurst": 1_000_000,
                },
            ],
        }
    )


async def one_round(chain: Chain, cache_dir: Path, made: list[str]) -> tuple[float, float]:
    """Milliseconds of ADD and of DEL, in a fresh namespace (its name appended to `made`)."""
    name = f"mnb{secrets.token_hex(3)}"
    sh(f"ip netns add {name}")  # setup, not timed
    made.append(name)
    key = f"bench/{name}"
    started = time.perf_counter()
    await runner.add(
        chain,
        key=key,
        bin_dirs=BIN_DIRS,
        container_id=name,
        netns=f"/var/run/netns/{name}",
        ifname="net1",
        device=None,
        pod=POD,
        cache_dir=cache_dir,
        timeout=10,
        runtime=RuntimeArgs(mac="02:00:5e:00:53:01"),
    )
    added = time.perf_counter()
    await runner.delete(key=key, cache_dir=cache_dir, bin_dirs=BIN_DIRS, timeout=10)
    deleted = time.perf_counter()
    sh(f"ip netns del {made.pop()}")  # teardown, not timed
    return (added - started) * 1e3, (deleted - added) * 1e3


async def measure(
    chain: Chain, cache_dir: Path, rounds: int, made: list[str]
) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {"ADD": [], "DEL": []}
    await one_round(chain, cache_dir, made)  # warm-up: plugin binaries into the page cache
    for i in range(rounds):
        add_ms, del_ms = await one_round(chain, cache_dir, made)
        timings["ADD"].append(add_ms)
        timings["DEL"].append(del_ms)
        if (i + 1) % 25 == 0:
            print(f"  {i + 1}/{rounds} rounds", file=sys.stderr)
    return timings


def report(timings: dict[str, list[float]], rounds: int) -> None:
    print(f"CNI chain bridge+host-local, tuning, bandwidth (cniVersion 1.0.0), {rounds} rounds, ms")
    print(f"{'command':8} {'p50':>8} {'p95':>8} {'max':>8}")
    for command, values in timings.items():
        print(
            f"{command:8} {percentile(values, 50):8.2f} {percentile(values, 95):8.2f} "
            f"{max(values):8.2f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    bridge = f"mnbb{secrets.token_hex(3)}"
    made: list[str] = []
    with tempfile.TemporaryDirectory(prefix="cni-bench-") as tmp:
        try:
            chain = bench_chain(bridge, Path(tmp) / "ipam")
            timings = asyncio.run(measure(chain, Path(tmp) / "cache", args.rounds, made))
        finally:
            for name in made:
                subprocess.run(["ip", "netns", "del", name], capture_output=True)
            subprocess.run(["ip", "link", "del", bridge], capture_output=True)
    report(timings, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
