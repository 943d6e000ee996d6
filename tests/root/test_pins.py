"""A pinned pod netns outlives its bind mount, so the interface in it can still be brought home.

Cases: after `ip netns del` (what the runtime's teardown does) a veth end inside a pinned netns
still exists and is reachable through the pin's path; unpinning lets the kernel destroy the
netns and the veth pair with it; an unpinned key resolves to the netns' own path.
"""

from __future__ import annotations

import os
import secrets
import subprocess

import pytest
from helpers import wait_for

from multinet.agent.pins import NetnsPins

pytestmark = pytest.mark.root


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True)


def test_pinned_netns_keeps_the_interface_until_unpinned() -> None:
    ns = f"mnpin{secrets.token_hex(3)}"
    host_end, pod_end = f"mnpin{secrets.token_hex(3)}", f"mnpip{secrets.token_hex(3)}"
    assert _ip("netns", "add", ns).returncode == 0
    pins = NetnsPins()
    try:
        assert _ip("link", "add", host_end, "type", "veth", "peer", "name", pod_end).returncode == 0
        assert _ip("link", "set", pod_end, "netns", ns).returncode == 0
        path = f"/var/run/netns/{ns}"
        pins.pin("claim/req/dev", path)
        assert pins.path("claim/req/dev", path) == path  # still mounted: its own path

        assert _ip("netns", "del", ns).returncode == 0  # the runtime's teardown
        pinned = pins.path("claim/req/dev", path)
        assert pinned.startswith("/proc/self/fd/")
        # The path is for this process (the agent's netlink threads); another process reaches
        # the same descriptor through our pid.
        ours = pinned.replace("/proc/self/", f"/proc/{os.getpid()}/")
        inside = subprocess.run(
            ["nsenter", f"--net={ours}", "ip", "-o", "link", "show", pod_end],
            capture_output=True,
            text=True,
        )
        assert inside.returncode == 0 and pod_end in inside.stdout
        assert _ip("link", "show", host_end).returncode == 0  # the pair is alive

        pins.unpin("claim/req/dev")
        wait_for(
            lambda: _ip("link", "show", host_end).returncode != 0,
            timeout=10,
            what="the veth pair to die with the unpinned netns",
        )
        assert len(pins) == 0
    finally:
        pins.unpin("claim/req/dev")
        _ip("netns", "del", ns)
        _ip("link", "del", host_end)


def test_unknown_key_resolves_to_the_netns_path() -> None:
    assert NetnsPins().path("nothing", "/var/run/netns/gone") == "/var/run/netns/gone"
