"""What a pod waits for: the agent's NRI RunPodSandbox end to end, beside a raw-netlink floor.

containerd calls the NRI plugins' RunPodSandbox once the sandbox's netns exists and the cluster
network's CNI ran; the pod's containers start only when the plugin has answered. This bench
makes that call as containerd does and times it from the request sent to the reply received.
As in production, the runtime and the plugin are two processes:

  runtime side  this process, on its main thread and one event loop, with multinet.nri's mux
                and ttrpc: it listens on a temp NRI socket, answers the plugin's RegisterPlugin,
                sends Configure (request timeout 2 s, containerd's default) and an empty
                Synchronize, then one pod event at a time with a 2 s deadline; it also runs the
                floor and makes and deletes the netns
  agent side    bench/nri_hook_agent.py, a child process: the real pieces wired as
                multinet.agent.main wires them, on its main thread's event loop: NRIPlugin ->
                NriHooks -> Attacher -> ModeMover(NetlinkMover, CniMover), a Checkpoint on disk
                (fsync'd, group commit) and NetnsPins in a temp state dir, Releaser for
                StopPodSandbox (stand-ins: see that file). Driven over a control socket (prepare
                a claim, collect the step timings), never while a call is timed

One host-device plan: a bench-made veth NIC moves into the pod's netns renamed net1 with MTU
1400, then MAC + up, one address (198.51.100.2/24), one route (203.0.113.0/24 via .1). Per
round, interleaved (order alternating) so background load hits every path alike:

  floor  hand-packed netlink on raw sockets doing the same kernel writes, one request/ack at a
         time, ifindex known, no state read, no checks, no bookkeeping (bench/attach_latency.py)
  run    RunPodSandbox for a pod whose claim was prepared beforehand (the PreparedClaim written
         through Checkpoint.update as NodePrepareResources does, not timed)
  empty  RunPodSandbox for a pod without claims: the protocol and dispatch alone
  stop   StopPodSandbox of the `run` pod (the NIC goes home), timed on its own

Not timed: `ip netns add` (a fresh netns per path and round), the prepare, the floor's NIC going
home (our detach), `ip netns del`, RemovePodSandbox and the claim's unprepare.
The agent times its steps in place (bench/nri_hook_agent.py) and sends them back after each
call, to show where the time beyond the floor goes; "outside the hook" is the round trip timed
here minus the hook timed there (ttrpc and mux both ways, the sockets, dispatch, loop wakeups).
Also printed: checkpoint writes per RunPodSandbox and StopPodSandbox (`Checkpoint.writes`) and
the file's size; `--claims N` first puts N other pods' claims and attachments into the
checkpoint, for the file size of a busier node (50 pods: ~110 KB).

Usage: bench/nri_hook.py [--rounds N] [--method state-change|dedicated] [--claims N] [--dir D]
(needs root). containerd before 2.3 sends pod events as StateChange (the default here); newer
NRI runtimes call RunPodSandbox/StopPodSandbox/RemovePodSandbox: both reach the same handler.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attach_latency import floor_attach, percentile, sh  # bench/ is on sys.path when run

from multinet.agent.pins import NetnsPins
from multinet.logs import TextFormatter
from multinet.netlink import restore
from multinet.netlink.hoststate import read_host_state_sync
from multinet.nri import mux, ttrpc
from multinet.nri._pb import nri_pb2
from multinet.plans import AttachPlan, ClaimRef, HostState, Route

PLUGIN_SERVICE = "nri.pkg.api.v1alpha1.Plugin"
RUNTIME_SERVICE = "nri.pkg.api.v1alpha1.Runtime"
REQUEST_TIMEOUT = 2.0  # containerd's plugin_request_timeout default, seconds
DEVICE = "bench-nic"
POD_ADDRESS = "198.51.100.2/24"
POD_ROUTE = Route(destination="203.0.113.0/24", gateway="198.51.100.1")
WARMUP = 3

# The floor (raw netlink doing the plan's kernel writes), sh, percentile: bench/attach_latency.py


def fresh_netns(made: list[str]) -> str:
    """A new named netns (its name appended to `made`), as its path."""
    name = f"mnh{secrets.token_hex(3)}"
    made.append(name)  # before it exists: an interrupted `ip netns add` is cleaned up too
    sh(f"ip netns add {name}")
    return f"/var/run/netns/{name}"


def drop_netns(made: list[str], path: str) -> None:
    name = os.path.basename(path)
    sh(f"ip netns del {name}")
    made.remove(name)


def ifindex_of(ifname: str) -> int:
    with open(f"/sys/class/net/{ifname}/ifindex") as f:
        return int(f.read())


def bench_plan(claim: ClaimRef, nic: str, host: HostState) -> AttachPlan:
    """What NodePrepareResources makes of the claim: rename, MTU, MAC, one address, one route."""
    return AttachPlan(
        claim=claim,
        request="nic",
        pool="bench-node",
        device=DEVICE,
        network="bench",
        mode="host-device",
        host_ifname=nic,
        pod_ifname="net1",
        addresses=(POD_ADDRESS,),
        mtu=1400,
        mac="02:aa:bb:cc:dd:01",
        routes=(POD_ROUTE,),
        host=host,
    )


# -- the agent: a process of its own ----------------------------------------------------------


class AgentProcess:
    """bench/nri_hook_agent.py in a child process, driven over a control socket (JSON lines)."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self._proc = proc
        self._reader = reader
        self._writer = writer

    @classmethod
    async def start(cls, socket_path: Path, state_dir: Path, nic: str, peer: str) -> AgentProcess:
        ours, theirs = socket.socketpair()
        script = Path(__file__).with_name("nri_hook_agent.py")
        argv = [sys.executable, str(script), "--control-fd", str(theirs.fileno())]
        argv += ["--socket", str(socket_path), "--state-dir", str(state_dir)]
        argv += ["--nic", nic, "--peer", peer]
        try:
            # Its own session: a Ctrl-C reaches this process, which stops the agent in order.
            proc = await asyncio.create_subprocess_exec(
                *argv, pass_fds=(theirs.fileno(),), start_new_session=True
            )
        finally:
            theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        return cls(proc, reader, writer)

    async def call(self, op: str, **fields: object) -> Any:
        """One control request; its answer."""
        self._writer.write(json.dumps({"op": op, **fields}).encode() + b"\n")
        await self._writer.drain()
        line = await self._reader.readline()
        if not line:
            raise RuntimeError(f"the agent process went away (exit code {self._proc.returncode})")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"agent process, {op}: {reply['error']}")
        return reply["ok"]

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.call("stop"), 15)
        self._writer.close()
        try:
            await asyncio.wait_for(self._proc.wait(), 15)
        except TimeoutError:
            self._proc.kill()  # our own child
            await self._proc.wait()


# -- the runtime's side of the NRI socket ------------------------------------------------------

_STATE_CHANGE = {
    "run": nri_pb2.RUN_POD_SANDBOX,
    "stop": nri_pb2.STOP_POD_SANDBOX,
    "remove": nri_pb2.REMOVE_POD_SANDBOX,
}
_DEDICATED: dict[str, tuple[str, Callable[[nri_pb2.PodSandbox], bytes]]] = {
    "run": ("RunPodSandbox", lambda p: nri_pb2.RunPodSandboxRequest(pod=p).SerializeToString()),
    "stop": ("StopPodSandbox", lambda p: nri_pb2.StopPodSandboxRequest(pod=p).SerializeToString()),
    "remove": (
        "RemovePodSandbox",
        lambda p: nri_pb2.RemovePodSandboxRequest(pod=p).SerializeToString(),
    ),
}


@dataclass
class Runtime:
    """containerd's end: listens, lets the plugin register, configures, synchronizes, and sends
    pod events to the plugin's service."""

    path: Path
    method: str  # "state-change" or "dedicated"
    plugin: str = ""
    _accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] | None = None
    _server: asyncio.Server | None = None
    _parts: list[Any] = field(default_factory=list)
    _client: ttrpc.Client | None = None

    async def listen(self) -> None:
        self._accepted = asyncio.get_running_loop().create_future()
        self._server = await asyncio.start_unix_server(self._accept, path=str(self.path))

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._accepted is not None
        if self._accepted.done():  # one plugin connection is all this bench serves
            writer.close()
            return
        self._accepted.set_result((reader, writer))

    async def handshake(self) -> None:
        assert self._accepted is not None
        reader, writer = await asyncio.wait_for(self._accepted, 30)  # the agent starts up
        conn = mux.Mux(reader, writer)
        registered = asyncio.Event()

        async def register(payload: bytes, ctx: ttrpc.CallContext) -> bytes:
            req = nri_pb2.RegisterPluginRequest.FromString(payload)
            self.plugin = f"{req.plugin_idx}-{req.plugin_name}"
            registered.set()
            return nri_pb2.Empty().SerializeToString()

        server = ttrpc.Server(
            lambda d: conn.send(mux.RUNTIME_CONN, d),
            {(RUNTIME_SERVICE, "RegisterPlugin"): register},
        )
        client = ttrpc.Client(lambda d: conn.send(mux.PLUGIN_CONN, d))
        conn.register(mux.PLUGIN_CONN, client.feed)
        conn.register(mux.RUNTIME_CONN, server.feed)
        reading = asyncio.create_task(conn.run(), name="runtime-mux")
        self._parts = [conn, server, reading]
        self._client = client
        await asyncio.wait_for(registered.wait(), 5)
        cfg = nri_pb2.ConfigureRequest(
            runtime_name="nri-hook-bench",
            runtime_version="0",
            registration_timeout=5000,
            request_timeout=int(REQUEST_TIMEOUT * 1000),
        )
        out = nri_pb2.ConfigureResponse.FromString(
            await client.call(PLUGIN_SERVICE, "Configure", cfg.SerializeToString(), budget=5)
        )
        if out.events & 0x7 != 0x7:
            raise RuntimeError(f"plugin subscribed to events {out.events:#x}, not the pod events")
        sync = nri_pb2.SynchronizeRequest(more=False)
        await client.call(PLUGIN_SERVICE, "Synchronize", sync.SerializeToString(), budget=5)

    async def pod_event(self, event: str, pod: nri_pb2.PodSandbox) -> float:
        """Send one pod event; seconds from the request sent to its reply received."""
        assert self._client is not None
        if self.method == "state-change":
            method = "StateChange"
            payload = nri_pb2.StateChangeEvent(event=_STATE_CHANGE[event], pod=pod)
            data = payload.SerializeToString()
        else:
            method, encode = _DEDICATED[event]
            data = encode(pod)
        started = time.perf_counter()
        await self._client.call(PLUGIN_SERVICE, method, data, budget=REQUEST_TIMEOUT)
        return time.perf_counter() - started

    async def close(self) -> None:
        if self._client is not None:
            self._client.close(ConnectionError("bench runtime closed"))
        if self._parts:
            conn, server, reading = self._parts
            reading.cancel()
            await asyncio.wait({reading})
            await server.close()
            await conn.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def pod_msg(uid: str, name: str, netns_path: str) -> nri_pb2.PodSandbox:
    """A pod sandbox as containerd describes it to plugins."""
    pid = 4242
    msg = nri_pb2.PodSandbox(
        id=secrets.token_hex(32),
        name=name,
        uid=uid,
        namespace="bench",
        runtime_handler="runc",
        pid=pid,
    )
    msg.labels.update(
        {
            "io.kubernetes.pod.name": name,
            "io.kubernetes.pod.namespace": "bench",
            "io.kubernetes.pod.uid": uid,
            "app": "bench",
        }
    )
    msg.annotations.update(
        {"kubernetes.io/config.source": "api", "kubernetes.io/config.seen": "2024-01-01T00:00:00Z"}
    )
    msg.linux.namespaces.add(type="network", path=netns_path)
    msg.linux.namespaces.add(type="ipc", path=f"/proc/{pid}/ns/ipc")
    msg.linux.namespaces.add(type="uts", path=f"/proc/{pid}/ns/uts")
    msg.ips.append("10.244.0.17")
    return msg


# -- the rounds --------------------------------------------------------------------------------


@dataclass
class Results:
    timings: dict[str, list[float]] = field(
        default_factory=lambda: {"floor": [], "run": [], "empty": [], "stop": []}
    )
    steps: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    run_writes: list[int] = field(default_factory=list)  # begun before the answer was written
    after_writes: list[int] = field(default_factory=list)  # after it
    stop_writes: list[int] = field(default_factory=list)
    checkpoint_bytes: int = 0


@dataclass
class Bench:
    nic: str
    baseline: HostState
    agent: AgentProcess
    runtime: Runtime
    host_sock: socket.socket
    made: list[str]
    results: Results = field(default_factory=Results)
    pods: int = 0

    def floor(self, keep: bool) -> None:
        path = fresh_netns(self.made)
        claim = ClaimRef(namespace="bench", name="floor", uid="floor")
        plan = bench_plan(claim, self.nic, self.baseline)
        ifindex = ifindex_of(self.nic)
        started = time.perf_counter()
        floor_attach(self.host_sock, ifindex, path, plan)
        elapsed = time.perf_counter() - started
        restore.detach(plan, path, host=self.baseline)
        drop_netns(self.made, path)
        if keep:
            self.results.timings["floor"].append(elapsed * 1e3)

    async def run(self, keep: bool) -> None:
        self.pods += 1
        name = f"pod-{self.pods}"
        claim = ClaimRef(namespace="bench", name=f"{name}-nic", uid=str(uuid.uuid4()))
        pod_uid = str(uuid.uuid4())
        await self.agent.call("prepare", claim=claim.model_dump(), pod_uid=pod_uid)
        path = fresh_netns(self.made)
        pod = pod_msg(pod_uid, name, path)
        await self.agent.call("mark")
        run = await self.runtime.pod_event("run", pod)
        # The attachment is recorded after the answer: the agent waits for it (not timed).
        ran = await self.agent.call("settled", pod_uid=pod_uid)
        ((answer,), writes) = ran["steps"]["t-answer"], ran["steps"].get("t-write", [])
        run_writes = sum(1 for began in writes if began < answer)
        self._check_attached(ran["attachments"], path)
        await self.agent.call("mark")
        stop = await self.runtime.pod_event("stop", pod)
        stopped = await self.agent.call("settled", pod_uid=pod_uid)
        self._check_home(stopped["attachments"])
        drop_netns(self.made, path)
        await self.runtime.pod_event("remove", pod)
        await self.agent.call("unprepare", uid=claim.uid)
        if not keep:
            return
        res = self.results
        res.timings["run"].append(run * 1e3)
        res.timings["stop"].append(stop * 1e3)
        res.run_writes.append(run_writes)
        res.after_writes.append(ran["writes"] - run_writes)
        res.stop_writes.append(stopped["writes"])
        res.checkpoint_bytes = ran["bytes"]
        res.steps["write-lag"] += [(began - answer) * 1e3 for began in writes if began >= answer]
        self._keep_steps(run * 1e3, ran["steps"], stopped["steps"])

    def _check_attached(self, atts: list[dict[str, str]], path: str) -> None:
        if (
            len(atts) != 1
            or atts[0]["phase"] != "attached"
            or atts[0]["netns"] != path
            or os.path.exists(f"/sys/class/net/{self.nic}")
        ):
            raise RuntimeError(f"RunPodSandbox answered but the NIC is not attached: {atts}")

    def _check_home(self, atts: list[dict[str, str]]) -> None:
        if atts or not os.path.exists(f"/sys/class/net/{self.nic}"):
            raise RuntimeError(f"StopPodSandbox answered but {self.nic} is not home: {atts}")

    def _keep_steps(
        self, total: float, run: dict[str, list[float]], stop: dict[str, list[float]]
    ) -> None:
        ms = {k: [v * 1e3 for v in vs] for k, vs in run.items() if not k.startswith("t-")}
        if len(ms.get("record", [])) != 1 or len(ms.get("write", [])) != 1:
            raise RuntimeError(f"expected 1 record and 1 file write per RunPodSandbox: {ms}")
        hook = ms["hook"][0]
        steps = self.results.steps
        steps["outside"].append(total - hook)
        steps["hook"].append(hook)
        steps["pin"].append(sum(ms.get("pin", [])))
        steps["attach"].append(ms["attach"][0])
        steps["netlink"].append(ms["netlink"][0])
        steps["record-attached"].append(ms["record"][0])
        steps["write-attached"].append(ms["write"][0])
        named = sum(ms.get("pin", [])) + ms["attach"][0]
        steps["hook-rest"].append(hook - named)
        stop_ms = {k: [v * 1e3 for v in vs] for k, vs in stop.items() if not k.startswith("t-")}
        steps["stop-hook"].append(sum(stop_ms.get("stop-hook", [])))
        steps["stop-netlink"].append(sum(stop_ms.get("netlink", [])))
        steps["stop-forget"].append(sum(stop_ms.get("forget", [])))
        steps["stop-write"].append(sum(stop_ms.get("write", [])))

    async def empty(self, keep: bool) -> None:
        self.pods += 1
        pod = pod_msg(str(uuid.uuid4()), f"pod-{self.pods}", "/var/run/netns/mnh-no-claims")
        elapsed = await self.runtime.pod_event("run", pod)
        await self.runtime.pod_event("stop", pod)
        await self.runtime.pod_event("remove", pod)
        if keep:
            self.results.timings["empty"].append(elapsed * 1e3)

    async def rounds(self, n: int) -> None:
        for i in range(WARMUP + n):
            keep = i >= WARMUP
            order = ("floor", "run", "empty") if i % 2 == 0 else ("empty", "run", "floor")
            for path in order:
                if path == "floor":
                    self.floor(keep)
                elif path == "run":
                    await self.run(keep)
                else:
                    await self.empty(keep)
            if keep and (i + 1 - WARMUP) % 50 == 0:
                print(f"  {i + 1 - WARMUP}/{n} rounds", file=sys.stderr)


# -- report ------------------------------------------------------------------------------------


def report(res: Results, rounds: int, method: str, claims: int) -> None:
    t = res.timings
    floor50, floor99 = percentile(t["floor"], 50), percentile(t["floor"], 99)
    print(
        f"NRI {'StateChange' if method == 'state-change' else 'RunPodSandbox'} -> reply, one "
        f"host-device NIC (move+rename+MTU, MAC+up, 1 address, 1 route), {rounds} rounds, ms"
    )
    print(f"{'path':8} {'p50':>8} {'p99':>8} {'mean':>8} {'p50/floor':>10} {'p99/floor':>10}")
    for label, values in t.items():
        p50, p99 = percentile(values, 50), percentile(values, 99)
        ratios = f" {p50 / floor50:10.2f} {p99 / floor99:10.2f}" if label != "stop" else ""
        print(f"{label:8} {p50:8.2f} {p99:8.2f} {statistics.fmean(values):8.2f}{ratios}")
    print(f"run over the floor at p50: {percentile(t['run'], 50) - floor50:.2f} ms")

    def counts(values: list[int]) -> str:
        lo, hi = min(values), max(values)
        return f"{lo}" if lo == hi else f"{lo}..{hi} (mean {statistics.fmean(values):.2f})"

    steps = res.steps
    lag = (
        f" (begun {percentile(steps['write-lag'], 50):.2f} ms after it, p50)"
        if steps["write-lag"]
        else ""
    )
    print(
        f"checkpoint writes per RunPodSandbox: {counts(res.run_writes)} begun before its answer "
        f"was written, {counts(res.after_writes)} after{lag}; per StopPodSandbox: "
        f"{counts(res.stop_writes)}; file {res.checkpoint_bytes} bytes"
        + (f" ({claims} other claims)" if claims else "")
    )

    def row(text: str, key: str, depth: int = 0) -> None:
        values = steps[key]
        label = "  " * depth + text
        print(f"  {label:<52} {statistics.fmean(values):8.2f} {percentile(values, 50):8.2f}")

    print(f"{'where a RunPodSandbox goes, ms per round':<54} {'mean':>8} {'p50':>8}")
    row("outside the hook: ttrpc+mux, dispatch, loop hops", "outside")
    row("the hook (NriHooks.on_run_pod_sandbox)", "hook")
    row("netns pin (bind mount)", "pin", 1)
    row("mover.attach", "attach", 1)
    row("of which the netlink work (worker thread)", "netlink", 2)
    row("rest (lookups, link facts, report)", "hook-rest", 1)
    row("after the answer: checkpoint record 'attached'", "record-attached")
    row("of which the file write (worker thread)", "write-attached", 1)
    print(f"{'StopPodSandbox, ms per round':<54} {'mean':>8} {'p50':>8}")
    row("the hook (NriHooks.on_stop_pod_sandbox)", "stop-hook")
    row("netlink work (detach, worker thread)", "stop-netlink", 1)
    row("checkpoint forget", "stop-forget", 1)
    row("of which the file write (worker thread)", "stop-write", 2)

    def mean(key: str) -> float:
        return statistics.fmean(steps[key])

    netlink_extra = mean("netlink") - statistics.fmean(t["floor"])
    hop = mean("attach") - mean("netlink")
    rest = mean("pin") + mean("hook-rest")
    print(
        f"run - floor, means: {statistics.fmean(t['run']) - statistics.fmean(t['floor']):.2f} ms"
        f" = netlink work beyond the floor's {netlink_extra:.2f}"
        f" + worker-thread hop {hop:.2f} + pin and rest {rest:.2f}"
        f" + outside the hook {mean('outside'):.2f}"
    )


# -- set-up and clean-up -----------------------------------------------------------------------


def setup_logging() -> None:
    """The agent's default (info, text formatter) into /dev/null; warnings also to stderr."""
    sink = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 (lives as long as we run)
    sink.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    visible = logging.StreamHandler(sys.stderr)
    visible.setLevel(logging.WARNING)
    visible.setFormatter(TextFormatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [sink, visible]
    root.setLevel(logging.INFO)


async def bench(
    args: argparse.Namespace, nic: str, peer: str, state_dir: Path, made: list[str]
) -> Results:
    baseline = read_host_state_sync(nic)
    socket_path = state_dir / "nri.sock"
    runtime = Runtime(socket_path, args.method)
    host_sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    agent: AgentProcess | None = None
    try:
        await runtime.listen()
        agent = await AgentProcess.start(socket_path, state_dir, nic, peer)
        await runtime.handshake()
        if args.claims:
            await agent.call("fill", claims=args.claims)
        b = Bench(nic, baseline, agent, runtime, host_sock, made)
        await b.rounds(args.rounds)
        return b.results
    finally:
        if agent is not None:
            await agent.stop()
        await runtime.close()
        host_sock.close()


def clean_up(state_dir: Path, made: list[str], nic: str) -> None:
    """Every pin, netns, link and file the bench made, whatever state it stopped in."""
    pins = state_dir / "pins"
    if pins.is_dir():
        NetnsPins(pins).prune(())
    for name in made:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    subprocess.run(["ip", "link", "del", nic], capture_output=True)
    with open("/proc/self/mountinfo") as f:
        mounted = [line.split()[4] for line in f if line.split()[4].startswith(str(state_dir))]
    if mounted:
        print(f"left {state_dir} in place: still mounted there: {mounted}", file=sys.stderr)
        return
    shutil.rmtree(state_dir, ignore_errors=True)


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument(
        "--method",
        choices=("state-change", "dedicated"),
        default="state-change",
        help="how pod events are sent: StateChange (containerd < 2.3) or RunPodSandbox etc.",
    )
    parser.add_argument(
        "--claims", type=int, default=0, help="other pods' claims in the checkpoint (its size)"
    )
    parser.add_argument(
        "--dir", type=Path, default=Path("/var/tmp"), help="where the state dir goes"
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _interrupted)
    setup_logging()
    tag = secrets.token_hex(3)
    nic, peer = f"mnhn{tag}", f"mnhp{tag}"
    made: list[str] = []
    state_dir = Path(tempfile.mkdtemp(prefix="multinet-nri-bench-", dir=args.dir))
    try:
        sh(f"ip link add {nic} type veth peer name {peer}")
        sh(f"ip link set {peer} up && ip link set {nic} up")
        sh(f"ip addr add 203.0.113.{10 + secrets.randbelow(240)}/24 dev {nic}")
        results = asyncio.run(bench(args, nic, peer, state_dir, made))
    finally:
        clean_up(state_dir, made, nic)
    report(results, args.rounds, args.method, args.claims)
    return 0


if __name__ == "__main__":
    sys.exit(main())
