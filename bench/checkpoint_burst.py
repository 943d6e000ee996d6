"""Benchmark: a burst of concurrent checkpoint writes, one write per change vs group commit.

The NRI hook and prepare both wait for the checkpoint; a burst of pods turns that into a queue.
This starts `--burst` concurrent `record()` calls (as the RunPodSandbox hook makes) on a real
checkpoint file on disk, pre-filled to about the size the local cluster's agent reaches with 50
pods (`--claims`, ~63 KB), all at once or arriving evenly over `--spread` seconds, and measures
the time until all of them returned, each call's latency and the number of file writes. The two
modes run interleaved, round by round, so background load hits both alike:

  per-change   max_batch=1: one write per change, the behaviour before group commit
  grouped      max_batch=0: changes made while a write is in flight share the next write

    .venv/bin/python bench/checkpoint_burst.py [--burst 50] [--rounds 20] [--claims 30] [--spread S]
        [--dir D] [--max-batch N ...]

`--max-batch 0` alone runs only the default mode, which also works against older code that has
no max_batch parameter (for a before/after comparison of the whole module).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from multinet.checkpoint import Checkpoint
from multinet.plans import (
    AgentState,
    Attachment,
    AttachPlan,
    ClaimRef,
    HostState,
    PreparedClaim,
    Route,
)


def _claim(i: int) -> PreparedClaim:
    ref = ClaimRef(
        namespace="bench", name=f"pod-{i}-net", uid=f"{i:08d}-0000-4000-8000-000000000000"
    )
    plans = tuple(
        AttachPlan(
            claim=ref,
            request=f"net{j}",
            pool="node-a",
            device=f"nic-{i}-{j}",
            network="storage",
            mode="host-device",
            host_ifname=f"nic{i}x{j}",
            pod_ifname=f"net{j}",
            addresses=(f"10.{j}.{i // 250}.{i % 250 + 2}/16",),
            routes=(Route(destination="10.200.0.0/16", gateway=f"10.{j}.0.1"),),
            host=HostState(
                ifname=f"nic{i}x{j}", ifindex=100 + i, mtu=1500, mac="02:00:00:00:00:01", up=True
            ),
            reserved_addresses=(f"10.{j}.{i // 250}.{i % 250 + 2}",),
        )
        for j in range(2)
    )
    return PreparedClaim(claim=ref, pod_uids=(f"pod-uid-{i}",), plans=plans)


def _seed(state_dir: Path, claims: int) -> int:
    """Writes the starting file (not timed); returns its size in bytes."""
    state = AgentState(claims={c.claim.uid: c for c in map(_claim, range(claims))})
    path = state_dir / "checkpoint.json"
    path.write_text(state.model_dump_json(indent=1))
    return path.stat().st_size


async def _round(
    state_dir: Path, burst: int, max_batch: int, spread: float
) -> tuple[float, list[float], int]:
    cp = (
        Checkpoint.open(state_dir, max_batch=max_batch) if max_batch else Checkpoint.open(state_dir)
    )
    latencies: list[float] = []

    async def record(i: int) -> None:
        await asyncio.sleep(spread * i / burst)  # arrivals spread evenly, 0: all at once
        started = time.perf_counter()
        await cp.record(
            [
                Attachment(
                    plan_key=f"key-{i}",
                    pod_uid=f"pod-uid-{i}",
                    pod=f"bench/pod-{i}",
                    netns=f"/var/run/netns/cni-{i}",
                    phase="attached",
                )
            ]
        )
        latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(record(i) for i in range(burst)))
    total = time.perf_counter() - started
    writes: int = getattr(cp, "writes", -1)  # -1: code from before the counter existed
    await cp.forget(f"key-{i}" for i in range(burst))  # back to the seed (not timed)
    return total, latencies, writes


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=50, help="concurrent record() calls")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--claims", type=int, default=30, help="claims in the file beforehand")
    parser.add_argument(
        "--spread", type=float, default=0.0, help="seconds over which the calls arrive"
    )
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"), help="where the file goes")
    parser.add_argument(
        "--max-batch", type=int, action="append", help="modes to run (default: 1 and 0)"
    )
    args = parser.parse_args()
    modes: list[int] = args.max_batch or [1, 0]
    state_dir = Path(tempfile.mkdtemp(prefix="multinet-bench-", dir=args.dir))
    try:
        size = _seed(state_dir, args.claims)
        totals: dict[int, list[float]] = {m: [] for m in modes}
        calls: dict[int, list[float]] = {m: [] for m in modes}
        writes: dict[int, list[int]] = {m: [] for m in modes}
        for _ in range(args.rounds):
            for mode in modes:
                total, latencies, n = asyncio.run(_round(state_dir, args.burst, mode, args.spread))
                totals[mode].append(total)
                calls[mode].extend(latencies)
                writes[mode].append(n)
        print(
            f"{args.burst} concurrent record() calls on a {size / 1024:.0f} KB checkpoint in "
            f"{args.dir}, arriving over {args.spread * 1e3:.0f} ms, {args.rounds} rounds"
        )
        print(
            f"{'mode':<12} {'burst p50':>10} {'burst max':>10} {'call p50':>9} "
            f"{'call p99':>9} {'writes/burst':>12}"
        )
        for mode in modes:
            name = "per-change" if mode == 1 else "grouped" if mode == 0 else f"max {mode}"
            if min(writes[mode]) < 0:
                name = "no counter"  # older code: without max_batch, one write per change
            print(
                f"{name:<12} {statistics.median(totals[mode]) * 1e3:>8.1f}ms "
                f"{max(totals[mode]) * 1e3:>8.1f}ms {_pct(calls[mode], 0.5) * 1e3:>7.1f}ms "
                f"{_pct(calls[mode], 0.99) * 1e3:>7.1f}ms {statistics.median(writes[mode]):>12.0f}"
            )
    finally:
        shutil.rmtree(state_dir)


if __name__ == "__main__":
    main()
