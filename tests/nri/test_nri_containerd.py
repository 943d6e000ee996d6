"""The plugin against a REAL containerd 2.1.9 with NRI enabled (a private instance per module).

Cases: register + configure + synchronize (no pods) and containerd reports the plugin connected;
containerd reassembles a request we split into 4096-byte frames, and never registers a plugin
that sends one larger frame (its RegisterPlugin is not answered: why the split exists); after
containerd is stopped and started again the same plugin reconnects by itself, synchronizes
again, and the handler keeps its state.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nrisupport import RUNTIME_SERVICE, Containerd, RecordingHandler, until

from multinet.nri import NRIPlugin, PluginSettings, mux, ttrpc
from multinet.nri._pb import nri_pb2

pytestmark = pytest.mark.root


@contextlib.asynccontextmanager
async def running(plugin: NRIPlugin) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(plugin.run())
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.wait({task})


def _settings(ctd: Containerd, name: str, **kw: Any) -> PluginSettings:
    return PluginSettings(socket_path=str(ctd.nri_socket), name=name, index="90", **kw)


async def test_register_configure_synchronize(containerd: Containerd) -> None:
    handler = RecordingHandler()
    plugin = NRIPlugin(handler, _settings(containerd, "mntest"))
    async with running(plugin):
        took = await until(lambda: plugin.connected, 10, "registration")
        assert handler.syncs == [[]]
        assert plugin.runtime.startswith("containerd 2.1.9"), plugin.runtime
        await until(
            lambda: '90-mntest\\" connected and synchronized' in containerd.log_text(),
            5,
            "containerd to log the plugin as connected",
        )
    print(f"registration to connected: {took * 1000:.1f} ms")


async def _raw_register(ctd: Containerd, name: str, version: str, split: bool) -> str:
    """Register by hand with a big NRI_version; return how containerd ended the exchange."""
    reader, writer = await asyncio.open_unix_connection(str(ctd.nri_socket))
    conn = mux.Mux(reader, writer)

    async def send(data: bytes) -> None:
        if split:
            await conn.send(mux.RUNTIME_CONN, data)
        else:  # one oversized frame, as a careless plugin would send
            writer.write(mux.HEADER.pack(mux.RUNTIME_CONN, len(data)) + data)
            await writer.drain()

    client = ttrpc.Client(send)
    conn.register(mux.RUNTIME_CONN, client.feed)
    reading = asyncio.create_task(conn.run())
    req = nri_pb2.RegisterPluginRequest(plugin_name=name, plugin_idx="91", NRI_version=version)
    try:
        await client.call(RUNTIME_SERVICE, "RegisterPlugin", req.SerializeToString(), budget=5)
        return "registered"
    except (ConnectionError, TimeoutError) as exc:
        return f"dropped: {type(exc).__name__}"
    finally:
        client.close(ConnectionError("done"))
        reading.cancel()
        await asyncio.wait({reading})
        await conn.close()


async def test_containerd_needs_frames_of_at_most_4096_bytes(containerd: Containerd) -> None:
    version = "v" * 10_000
    assert await _raw_register(containerd, "mnsplit", version, split=True) == "registered"
    outcome = await _raw_register(containerd, "mnwhole", version, split=False)
    assert outcome.startswith("dropped"), outcome


async def test_reconnects_after_containerd_restart_keeping_handler_state(
    containerd: Containerd,
) -> None:
    handler = RecordingHandler()
    plugin = NRIPlugin(handler, _settings(containerd, "mnrestart", backoff_max=1.0))
    async with running(plugin) as task:
        await until(lambda: plugin.connected, 10, "first registration")
        handler.syncs[0].append("agent state survives")  # type: ignore[arg-type]
        containerd.stop()
        await until(lambda: not plugin.connected, 5, "the plugin to notice the restart")
        start = time.monotonic()
        await asyncio.to_thread(containerd.start)
        started = time.monotonic() - start
        took = await until(lambda: plugin.registrations == 2, 15, "re-registration")
        assert plugin.connected and not task.done()
        # The same handler (with the marker), synced again.
        assert handler.syncs == [["agent state survives"], []]  # type: ignore[comparison-overlap]
    print(f"containerd start {started:.2f} s, then re-registered after {took:.2f} s")
