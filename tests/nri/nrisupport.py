"""Test support for the NRI plugin: a recording handler, a wait helper, a standalone containerd
and FakeRuntime (the runtime's side of the protocol, for faults a real containerd never produces:
malformed input, exact deadlines, chunked Synchronize with chosen chunk sizes)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from multinet.nri import NRIPlugin, PluginSettings, PodSandbox, mux, ttrpc
from multinet.nri._pb import nri_pb2

PLUGIN_SERVICE = "nri.pkg.api.v1alpha1.Plugin"
RUNTIME_SERVICE = "nri.pkg.api.v1alpha1.Runtime"
CONTAINERD_BIN = Path.home() / ".cache/multinet/debs/root/usr/bin"


async def until(cond: Callable[[], bool], within: float = 10.0, what: str = "condition") -> float:
    """Async twin of helpers.wait_for (which blocks the loop): poll `cond` without blocking.

    Returns the seconds it took; fails the test naming `what` after `within` seconds.
    """
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > within:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


def _exists(path: str | None) -> bool:
    # A stat on a local nsfs mount: microseconds, fine on the loop (ASYNC240 is about slow I/O).
    return path is not None and os.path.exists(path)


@dataclass
class RecordingHandler:
    """A PodHandler that records what it was given; RunPodSandbox can be slowed or made to fail."""

    run_delay: float = 0.0
    run_error: str | None = None
    only: Callable[[PodSandbox], bool] | None = None  # record (slow, fail) only these pods
    calls: list[tuple[str, PodSandbox]] = field(default_factory=list)
    syncs: list[list[PodSandbox]] = field(default_factory=list)
    finished: list[tuple[str, str]] = field(default_factory=list)  # (event, pod uid) when done
    netns_seen: list[tuple[str, bool]] = field(default_factory=list)  # (event, netns existed)

    def _mine(self, pod: PodSandbox) -> bool:
        return self.only is None or self.only(pod)

    async def on_synchronize(self, pods: list[PodSandbox]) -> None:
        self.syncs.append(pods)

    async def on_run_pod_sandbox(self, pod: PodSandbox) -> None:
        if not self._mine(pod):
            return
        self.calls.append(("run", pod))
        self.netns_seen.append(("run", _exists(pod.netns)))
        await asyncio.sleep(self.run_delay)
        self.finished.append(("run", pod.uid))
        if self.run_error is not None:
            raise RuntimeError(self.run_error)

    async def on_stop_pod_sandbox(self, pod: PodSandbox) -> None:
        if self._mine(pod):
            self.calls.append(("stop", pod))
            self.netns_seen.append(("stop", _exists(pod.netns)))
            self.finished.append(("stop", pod.uid))

    async def on_remove_pod_sandbox(self, pod: PodSandbox) -> None:
        if self._mine(pod):
            self.calls.append(("remove", pod))
            self.finished.append(("remove", pod.uid))

    def events(self, uid: str) -> list[str]:
        return [kind for kind, pod in self.calls if pod.uid == uid]


class Containerd:
    """A private containerd 2.1.9 with NRI enabled: own root, state, sockets under `base`."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.nri_socket = base / "nri.sock"
        self.config = base / "config.toml"
        self.log = base / "containerd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        (base / "cni").mkdir(parents=True, exist_ok=True)
        self.config.write_text(f"""version = 3
root = "{base}/root"
state = "{base}/state"
disabled_plugins = [
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.blockfile", "io.containerd.snapshotter.v1.erofs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing",
]
[grpc]
  address = "{base}/containerd.sock"
[ttrpc]
  address = "{base}/containerd.sock.ttrpc"
[plugins.'io.containerd.nri.v1.nri']
  disable = false
  socket_path = "{self.nri_socket}"
  plugin_path = "{base}/nri-plugins"
  plugin_config_path = "{base}/nri-conf"
  plugin_registration_timeout = "5s"
  plugin_request_timeout = "2s"
[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
[plugins.'io.containerd.cri.v1.runtime'.cni]
  bin_dirs = ["/usr/lib/cni"]
  conf_dir = "{base}/cni"
""")

    def start(self, timeout: float = 20.0) -> None:
        env = dict(os.environ, PATH=f"{CONTAINERD_BIN}:/usr/sbin:/usr/bin:/sbin:/bin")
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(CONTAINERD_BIN / "containerd"), "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not self._accepting():
            if self.proc.poll() is not None:
                raise RuntimeError(f"containerd exited ({self.proc.returncode}); see {self.log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"containerd NRI socket not ready in {timeout}s; see {self.log}")
            time.sleep(0.05)

    def _accepting(self) -> bool:
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(str(self.nri_socket))
            except OSError:
                return False
        return True

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


Handler = Callable[[bytes, ttrpc.CallContext], Awaitable[bytes]]


class FakeRuntime:
    """The runtime's end of one plugin connection, built from our own ttrpc pieces.

    It records the size of every mux frame the plugin sends, answers RegisterPlugin, and lets a
    test call the plugin's methods with chosen payloads and timeouts.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.frame_sizes: list[int] = []
        self.registered: list[nri_pb2.RegisterPluginRequest] = []
        self._decoder = mux.FrameDecoder()

        async def register(payload: bytes, ctx: ttrpc.CallContext) -> bytes:
            self.registered.append(nri_pb2.RegisterPluginRequest.FromString(payload))
            return b""

        self.server = ttrpc.Server(
            lambda d: self._send(mux.RUNTIME_CONN, d),
            {(RUNTIME_SERVICE, "RegisterPlugin"): register},
        )
        self.client = ttrpc.Client(lambda d: self._send(mux.PLUGIN_CONN, d))
        self.reading = asyncio.create_task(self._read())

    async def _send(self, conn_id: int, data: bytes) -> None:
        self.writer.write(mux.encode_frames(conn_id, data))
        await self.writer.drain()

    async def _read(self) -> None:
        while data := await self.reader.read(65536):
            for conn_id, payload in self._decoder.feed(data):
                self.frame_sizes.append(mux.HEADER.size + len(payload))
                if conn_id == mux.PLUGIN_CONN:
                    self.client.feed(payload)
                elif conn_id == mux.RUNTIME_CONN:
                    self.server.feed(payload)

    async def call(self, method: str, msg: bytes, budget: float | None = 2.0) -> bytes:
        return await self.client.call(PLUGIN_SERVICE, method, msg, budget=budget)

    async def handshake(self, chunks: list[list[nri_pb2.PodSandbox]] | None = None) -> int:
        """Configure + Synchronize in the given chunks. Returns the events the plugin asked for."""
        await until(lambda: bool(self.registered), 5, "RegisterPlugin")
        cfg = nri_pb2.ConfigureRequest(
            runtime_name="fake", runtime_version="0", request_timeout=2000
        )
        resp = nri_pb2.ConfigureResponse.FromString(
            await self.call("Configure", cfg.SerializeToString())
        )
        chunks = chunks or [[]]
        for i, pods in enumerate(chunks):
            more = i < len(chunks) - 1
            req = nri_pb2.SynchronizeRequest(pods=pods, more=more)
            out = nri_pb2.SynchronizeResponse.FromString(
                await self.call("Synchronize", req.SerializeToString())
            )
            assert out.more == more, f"chunk {i}: plugin answered more={out.more}, expected {more}"
        return resp.events

    async def close(self) -> None:
        self.writer.close()
        await self.server.close()
        self.client.close(ConnectionError("fake runtime closed"))
        self.reading.cancel()
        await asyncio.wait({self.reading})


def pod_msg(
    uid: str, netns: str | None = "/var/run/netns/cni-test", name: str = "p"
) -> nri_pb2.PodSandbox:
    msg = nri_pb2.PodSandbox(id=f"sb-{uid}", name=name, uid=uid, namespace="default", pid=42)
    msg.ips.append("10.0.0.5")
    if netns is not None:
        msg.linux.namespaces.add(type="network", path=netns)
    msg.linux.namespaces.add(type="ipc", path="/proc/42/ns/ipc")
    return msg


@contextlib.asynccontextmanager
async def plugin_with_fake_runtime(
    handler: RecordingHandler, **settings: Any
) -> AsyncIterator[tuple[NRIPlugin, FakeRuntime, asyncio.Task[bool]]]:
    """A plugin serving one end of a socketpair, a FakeRuntime on the other end."""
    plugin_sock, runtime_sock = socket.socketpair()
    opts = {"socket_path": "/nonexistent", "name": "mntest", "index": "90", **settings}
    plugin = NRIPlugin(handler, PluginSettings(**opts))
    reader, writer = await asyncio.open_unix_connection(sock=plugin_sock)
    runtime = FakeRuntime(*await asyncio.open_unix_connection(sock=runtime_sock))
    serving = asyncio.create_task(plugin.serve(reader, writer))
    try:
        yield plugin, runtime, serving
    finally:
        await runtime.close()
        async with asyncio.timeout(5):
            await serving
        await plugin.shutdown()


class PluginThread:
    """Runs a plugin on its own event loop in a thread, so a synchronous test can block on kubectl
    without delaying the plugin's answers to the runtime."""

    def __init__(self, plugin: NRIPlugin) -> None:
        self.plugin = plugin
        self.loop = asyncio.new_event_loop()
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._main, name="nri-plugin", daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._task = self.loop.create_task(self.plugin.run())
        with contextlib.suppress(asyncio.CancelledError):
            self.loop.run_until_complete(self._task)
        self.loop.close()

    def __enter__(self) -> PluginThread:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        while self._task is None:
            time.sleep(0.01)
        self.loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(timeout=15)
        assert not self._thread.is_alive(), "plugin thread did not stop"
