"""The plugin's NRI behaviour, driven by FakeRuntime over a socketpair (exact deadlines and chunking
that a real containerd does not let a test choose; the real runtime is in test_nri_containerd.py).

Cases: registration carries name and two-digit index; Configure asks for events 0x7; chunked
Synchronize answers more=true until the last chunk and hands all pods to the handler once, and
only then is the plugin connected; StateChange and the dedicated methods reach the same handler
methods; container events are acknowledged; unknown methods get Unimplemented; a failing
RunPodSandbox returns its message; a slow one is answered with an error before the deadline, keeps
running, and the Stop for the same pod waits for it; settings are validated.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from nrisupport import RecordingHandler, plugin_with_fake_runtime, pod_msg, until

from multinet.errors import ConfigError
from multinet.nri import PluginSettings
from multinet.nri._pb import nri_pb2
from multinet.nri.ttrpc import DEADLINE_EXCEEDED, UNIMPLEMENTED, TtrpcError


async def test_register_configure_and_chunked_synchronize() -> None:
    handler = RecordingHandler()
    async with plugin_with_fake_runtime(handler) as (plugin, runtime, _):
        chunks = [[pod_msg("u1"), pod_msg("u2")], [pod_msg("u3", netns=None)], [pod_msg("u4")]]
        handshake = asyncio.create_task(runtime.handshake(chunks))
        await until(lambda: bool(runtime.registered), 5, "RegisterPlugin")
        assert not plugin.connected
        events = await handshake
        await until(lambda: plugin.connected, 5, "connected")
        reg = runtime.registered[0]
        assert (reg.plugin_name, reg.plugin_idx) == ("mntest", "90")
        assert events == 0x7
        assert [[p.uid for p in pods] for pods in handler.syncs] == [["u1", "u2", "u3", "u4"]]
        pods = {p.uid: p for p in handler.syncs[0]}
        assert pods["u1"].netns == "/var/run/netns/cni-test" and pods["u3"].netns is None
        assert plugin.registrations == 1 and plugin.runtime == "fake 0"


async def test_pod_events_reach_the_handler_both_ways() -> None:
    handler = RecordingHandler()
    async with plugin_with_fake_runtime(handler) as (_, runtime, _):
        await runtime.handshake()
        for event in (1, 2, 3):
            msg = nri_pb2.StateChangeEvent(event=event, pod=pod_msg("sc"))  # type: ignore[arg-type]
            assert await runtime.call("StateChange", msg.SerializeToString()) == b""
        for method, cls in [
            ("RunPodSandbox", nri_pb2.RunPodSandboxRequest),
            ("StopPodSandbox", nri_pb2.StopPodSandboxRequest),
            ("RemovePodSandbox", nri_pb2.RemovePodSandboxRequest),
        ]:
            assert await runtime.call(method, cls(pod=pod_msg("dd")).SerializeToString()) == b""
        # A container event (CREATE_CONTAINER = 4) we did not subscribe to is acknowledged.
        msg = nri_pb2.StateChangeEvent(event=4, pod=pod_msg("sc"))  # type: ignore[arg-type]
        assert await runtime.call("StateChange", msg.SerializeToString()) == b""
        with pytest.raises(TtrpcError) as err:
            await runtime.call("CreateContainer", b"")
        assert err.value.code == UNIMPLEMENTED
    assert handler.events("sc") == ["run", "stop", "remove"]
    assert handler.events("dd") == ["run", "stop", "remove"]
    run_pod = handler.calls[0][1]
    assert (run_pod.uid, run_pod.netns, run_pod.pid, run_pod.ips) == (
        "sc",
        "/var/run/netns/cni-test",
        42,
        ["10.0.0.5"],
    )


async def test_failing_run_pod_sandbox_returns_the_message_even_when_large() -> None:
    message = "claim default/c1 device eth9: " + "x" * 9000
    handler = RecordingHandler(run_error=message)
    async with plugin_with_fake_runtime(handler) as (_, runtime, _):
        await runtime.handshake()
        runtime.frame_sizes.clear()
        req = nri_pb2.RunPodSandboxRequest(pod=pod_msg("u1"))
        with pytest.raises(TtrpcError) as err:
            await runtime.call("RunPodSandbox", req.SerializeToString())
        assert err.value.message == message
        assert len(runtime.frame_sizes) >= 3 and max(runtime.frame_sizes) <= 4096


async def test_slow_handler_is_answered_before_the_deadline_and_keeps_running() -> None:
    handler = RecordingHandler(run_delay=3.0)
    async with plugin_with_fake_runtime(handler) as (plugin, runtime, _):
        await runtime.handshake()
        start = time.monotonic()
        req = nri_pb2.RunPodSandboxRequest(pod=pod_msg("slow"))
        with pytest.raises(TtrpcError) as err:
            await runtime.call("RunPodSandbox", req.SerializeToString(), budget=2.0)
        answered = time.monotonic() - start
        assert err.value.code == DEADLINE_EXCEEDED
        assert "default/p" in err.value.message and "not finished within" in err.value.message
        # Budget: 2 s deadline minus the 0.25 s margin; the requirement is "before 2 s".
        assert 1.6 < answered < 2.0, answered
        assert plugin.connected
        # The runtime then stops the pod: that handler runs only after the slow one finished
        # (1.25 s later), which still fits in Stop's own deadline.
        stop = nri_pb2.StopPodSandboxRequest(pod=pod_msg("slow"))
        assert await runtime.call("StopPodSandbox", stop.SerializeToString(), budget=2.0) == b""
        assert handler.finished == [("run", "slow"), ("stop", "slow")]


async def test_other_pods_are_not_held_up_by_a_slow_one() -> None:
    handler = RecordingHandler(run_delay=1.0, only=lambda p: p.uid == "slow")
    async with plugin_with_fake_runtime(handler) as (_, runtime, _):
        await runtime.handshake()
        slow = asyncio.create_task(
            runtime.call(
                "RunPodSandbox",
                nri_pb2.RunPodSandboxRequest(pod=pod_msg("slow")).SerializeToString(),
            )
        )
        start = time.monotonic()
        fast = nri_pb2.RunPodSandboxRequest(pod=pod_msg("fast"))
        await runtime.call("RunPodSandbox", fast.SerializeToString())
        assert time.monotonic() - start < 0.5
        await slow


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"index": "1"}, "index"),
        ({"index": "100"}, "index"),
        ({"name": "has space"}, "name"),
        ({"socket_path": ""}, "socket_path"),
        ({"safety_margin": 3.0}, "safety_margin"),
    ],
)
def test_settings_are_validated(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        PluginSettings(**kwargs)  # type: ignore[arg-type]
