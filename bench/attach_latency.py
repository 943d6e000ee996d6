"""Attach latency of multinet's netlink path beside a raw-netlink floor doing the same operations.

One host-device plan: move a veth "NIC" into a fresh pod namespace renamed with a new MTU, then
inside the pod: MAC + up, two addresses, one route. Measured three ways, interleaved run by run
so background load hits all of them alike:

  floor   a minimal loop: hand-packed netlink messages on raw sockets, one request/ack at a time,
          ifindex known in advance, no state read, no checks, no undo bookkeeping
  ours    multinet.netlink.attach.attach() called directly on this thread
  hook    the same through the asyncio mover (NetlinkMover.attach), as the NRI hook calls it

  policy  (with --policy) ours with routing policy and tuning added to the plan: two sysctls
          written before the link comes up, one ethtool feature, a permanent neighbour, a route
          in table 100, a rule, and the pod's default route replaced

Every run gets a new namespace (`ip netns add`, not timed); the NIC is restored with our detach
between runs (not timed). Prints p50/p99 per path and the ratios to the floor.
Usage: bench/attach_latency.py [--runs N] [--policy] (needs root).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable

from multinet.netlink import executor, netns, restore
from multinet.netlink.attach import attach
from multinet.plans import AttachPlan, ClaimRef, HostState, Neighbor, Route, Rule, Sysctl

# -- the floor: raw netlink, struct-packed -----------------------------------------------------

_HDR = struct.Struct("=IHHII")
_REQ_ACK = 0x1 | 0x4  # NLM_F_REQUEST | NLM_F_ACK
_CREATE_EXCL = 0x400 | 0x200


def _attr(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def _request(sock: socket.socket, mtype: int, flags: int, body: bytes, seq: int) -> None:
    sock.send(_HDR.pack(16 + len(body), mtype, flags, seq, 0) + body)
    reply = sock.recv(65536)
    (code,) = struct.unpack_from("=i", reply, 16)
    if code:
        raise OSError(-code, os.strerror(-code))


def floor_attach(host_sock: socket.socket, ifindex: int, netns_path: str, plan: AttachPlan) -> None:
    """The plan's kernel writes and nothing else: move+rename+MTU, MAC+up, each (IPv4) address,
    the first route. bench/nri_hook.py uses it too, for its own one-address plan."""
    assert plan.mac and plan.mtu and plan.routes
    dst, dst_len = plan.routes[0].destination.split("/")
    gateway = plan.routes[0].gateway
    assert gateway is not None
    ns_fd = os.open(netns_path, os.O_RDONLY)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        netns.setns(ns_fd)
        pod = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        netns.setns(home)
        link = struct.pack("=BxHiII", 0, 0, ifindex, 0, 0)
        move = (
            _attr(28, struct.pack("=I", ns_fd))  # IFLA_NET_NS_FD
            + _attr(3, plan.pod_ifname.encode() + b"\0")  # IFLA_IFNAME
            + _attr(4, struct.pack("=I", plan.mtu))  # IFLA_MTU
        )
        _request(host_sock, 16, _REQ_ACK, link + move, 1)  # RTM_NEWLINK
        mac = bytes.fromhex(plan.mac.replace(":", ""))
        up = struct.pack("=BxHiII", 0, 0, ifindex, 1, 1) + _attr(1, mac)  # IFF_UP, IFLA_ADDRESS
        _request(pod, 16, _REQ_ACK, up, 2)
        for seq, cidr in enumerate(plan.addresses, start=3):
            address, plen = cidr.split("/")
            addr = socket.inet_aton(address)
            body = struct.pack("=BBBBI", socket.AF_INET, int(plen), 0, 0, ifindex)
            body += _attr(2, addr) + _attr(1, addr)  # IFA_LOCAL, IFA_ADDRESS
            _request(pod, 20, _REQ_ACK | _CREATE_EXCL, body, seq)  # RTM_NEWADDR
        route = struct.pack("=BBBBBBBBI", socket.AF_INET, int(dst_len), 0, 0, 254, 3, 0, 1, 0)
        route += _attr(1, socket.inet_aton(dst)) + _attr(5, socket.inet_aton(gateway))
        route += _attr(4, struct.pack("=i", ifindex))  # RTA_DST, RTA_GATEWAY, RTA_OIF
        _request(pod, 24, _REQ_ACK | _CREATE_EXCL, route, 3 + len(plan.addresses))
        pod.close()
    finally:
        os.close(home)
        os.close(ns_fd)


# -- harness -----------------------------------------------------------------------------------


def sh(cmd: str) -> None:
    subprocess.run(cmd, shell=True, check=True, capture_output=True)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def bench_plan(nic: str) -> AttachPlan:
    """The host-device plan every path executes: rename, MTU, MAC, two addresses, one route."""
    return AttachPlan(
        claim=ClaimRef(namespace="bench", name="claim", uid="bench-uid"),
        request="nic",
        pool="node",
        device="bench-nic",
        network="bench",
        mode="host-device",
        host_ifname=nic,
        pod_ifname="net1",
        addresses=("10.77.0.2/24", "10.77.0.3/24"),
        mtu=1400,
        mac="02:aa:bb:cc:dd:01",
        routes=(Route(destination="10.78.0.0/16", gateway="10.77.0.1"),),
    )


def with_policy(plan: AttachPlan) -> AttachPlan:
    """The bench plan plus the policy and tuning a claim may ask for."""
    return plan.model_copy(
        update={
            "sysctls": (
                Sysctl(path=("net", "ipv4", "conf", "net1", "arp_ignore"), value="1"),
                Sysctl(path=("net", "ipv6", "conf", "net1", "accept_ra"), value="0"),
            ),
            "features": (("tx-checksumming", False),),
            "neighbors": (Neighbor(address="10.77.0.9", mac="02:00:00:00:00:09"),),
            "routes": (
                *plan.routes,
                Route(destination="10.79.0.0/16", gateway="10.77.0.1", table=100),
            ),
            "rules": (Rule(priority=100, source="10.77.0.0/24", table=100),),
            "default_route": True,
            "default_gateways": ("10.77.0.1",),
        }
    )


def fresh_netns(made: list[str]) -> str:
    """A new named netns (its name appended to `made`), as its path."""
    name = f"mnb{secrets.token_hex(3)}"
    sh(f"ip netns add {name}")
    made.append(name)
    return f"/var/run/netns/{name}"


def measure(
    paths: dict[str, Callable[[str], None]],
    plan: AttachPlan,
    baseline: HostState | None,
    runs: int,
    made: list[str],
) -> dict[str, list[float]]:
    """Milliseconds per run of each path, interleaved, each in a fresh netns, detached between."""
    timings: dict[str, list[float]] = {k: [] for k in paths}
    for i in range(runs):
        for label, fn in paths.items():
            path = fresh_netns(made)
            started = time.perf_counter()
            fn(path)
            timings[label].append((time.perf_counter() - started) * 1e3)
            restore.detach(plan, path, host=baseline)
            sh(f"ip netns del {made.pop()}")
        if (i + 1) % 50 == 0:
            print(f"  {i + 1}/{runs} runs", file=sys.stderr)
    return timings


def report(timings: dict[str, list[float]], runs: int) -> None:
    floor50, floor99 = percentile(timings["floor"], 50), percentile(timings["floor"], 99)
    print(
        f"attach latency, one host-device (move+rename+MTU, MAC, up, 2 addresses, 1 route), "
        f"{runs} runs each, ms"
    )
    print(f"{'path':8} {'p50':>8} {'p99':>8} {'mean':>8} {'p50/floor':>10} {'p99/floor':>10}")
    for label, values in timings.items():
        p50, p99 = percentile(values, 50), percentile(values, 99)
        print(
            f"{label:8} {p50:8.2f} {p99:8.2f} {statistics.fmean(values):8.2f} "
            f"{p50 / floor50:10.2f} {p99 / floor99:10.2f}"
        )
    overhead = percentile(timings["hook"], 50) - floor50
    print(f"hook overhead over the floor at p50: {overhead:.2f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument(
        "--policy", action="store_true", help="also time a plan with routing policy and tuning"
    )
    args = parser.parse_args()
    tag = secrets.token_hex(3)
    nic, peer = f"mnbn{tag}", f"mnbp{tag}"
    made: list[str] = []
    sh(f"ip link add {nic} type veth peer name {peer}")
    try:
        sh(f"ip link set {peer} up && ip link set {nic} up")
        n = secrets.randbelow(64 * 256)
        sh(f"ip addr add 100.{64 + n // 256}.{n % 256}.10/24 brd + dev {nic}")
        with open(f"/sys/class/net/{nic}/ifindex") as f:
            ifindex = int(f.read())
        plan = bench_plan(nic)
        host_sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        mover = executor.NetlinkMover()
        loop = asyncio.new_event_loop()
        host_state = None

        def run(path: str) -> None:
            nonlocal host_state
            result = attach(plan, path)
            host_state = result.host

        def run_hook(path: str) -> None:
            nonlocal host_state
            result = loop.run_until_complete(mover.attach(plan, path))
            host_state = result.host

        def run_floor(path: str) -> None:
            floor_attach(host_sock, ifindex, path, plan)

        paths: dict[str, Callable[[str], None]] = {
            "floor": run_floor,
            "ours": run,
            "hook": run_hook,
        }
        policy = with_policy(plan)

        def run_policy(path: str) -> None:
            attach(policy, path)

        if args.policy:
            paths["policy"] = run_policy
        run(fresh_netns(made))  # warm-up; also records the host state used for every restore
        baseline = host_state
        restore.detach(plan, f"/var/run/netns/{made[-1]}", host=baseline)
        timings = measure(paths, plan, baseline, args.runs, made)
        loop.close()
        mover.close()
        host_sock.close()
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        subprocess.run(["ip", "link", "del", nic], capture_output=True)

    report(timings, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
