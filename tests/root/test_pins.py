"""A pinned pod netns outlives its bind mount and the agent, so the interface in it can still be
brought home.

Cases: after `ip netns del` (what the runtime's teardown does) a veth end inside a pinned netns
still exists and is reachable through the pin's path; unpinning lets the kernel destroy the
netns and the veth pair with it; a pin made by a process that was SIGKILLed is still there for
the next one; pins of unrecorded keys are pruned; an unpinned key resolves to the netns' own path.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import wait_for

from multinet.agent.pins import NetnsPins

pytestmark = pytest.mark.root


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True)


@dataclass
class PodNetns:
    """A netns with one end of a veth pair inside, as a pod holding our interface."""

    name: str
    host_end: str
    pod_end: str

    @property
    def path(self) -> str:
        return f"/var/run/netns/{self.name}"


@pytest.fixture
def pod_netns() -> Iterator[PodNetns]:
    it = PodNetns(
        f"mnpin{secrets.token_hex(3)}",
        f"mnpin{secrets.token_hex(3)}",
        f"mnpip{secrets.token_hex(3)}",
    )
    assert _ip("netns", "add", it.name).returncode == 0
    try:
        add = _ip("link", "add", it.host_end, "type", "veth", "peer", "name", it.pod_end)
        assert add.returncode == 0
        assert _ip("link", "set", it.pod_end, "netns", it.name).returncode == 0
        yield it
    finally:
        _ip("netns", "del", it.name)
        _ip("link", "del", it.host_end)


def test_pinned_netns_keeps_the_interface_until_unpinned(
    tmp_path: Path, pod_netns: PodNetns
) -> None:
    ns, host_end, pod_end, path = (
        pod_netns.name,
        pod_netns.host_end,
        pod_netns.pod_end,
        pod_netns.path,
    )
    pins = NetnsPins(tmp_path / "pins")
    try:
        pins.pin("claim/req/dev", path)
        assert pins.path("claim/req/dev", path) == path  # still mounted: its own path

        assert _ip("netns", "del", ns).returncode == 0  # the runtime's teardown
        pinned = pins.path("claim/req/dev", path)
        assert pinned.startswith(str(tmp_path / "pins"))
        inside = subprocess.run(
            ["nsenter", f"--net={pinned}", "ip", "-o", "link", "show", pod_end],
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


_PIN_AND_DIE = """
import os, signal, sys
from pathlib import Path
from multinet.agent.pins import NetnsPins
NetnsPins(Path(sys.argv[1])).pin(sys.argv[2], sys.argv[3])
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_pin_outlives_the_agent_that_made_it(tmp_path: Path, pod_netns: PodNetns) -> None:
    ns, host_end, path = pod_netns.name, pod_netns.host_end, pod_netns.path
    pins = NetnsPins(tmp_path / "pins")
    try:
        crashed = subprocess.run(
            [sys.executable, "-c", _PIN_AND_DIE, str(tmp_path / "pins"), "k/r/d", path]
        )
        assert crashed.returncode == -9
        assert _ip("netns", "del", ns).returncode == 0  # torn down while no agent runs
        assert pins.pinned("k/r/d")  # the next agent finds the pin
        assert _ip("link", "show", host_end).returncode == 0  # and the interface alive in it
        assert pins.prune(["k/r/d"]) == []
        assert len(pins.prune([])) == 1  # a pin no attachment records is released
        wait_for(
            lambda: _ip("link", "show", host_end).returncode != 0,
            timeout=10,
            what="the veth pair to die with the released netns",
        )
    finally:
        pins.unpin("k/r/d")


def test_unknown_key_resolves_to_the_netns_path(tmp_path: Path) -> None:
    pins = NetnsPins(tmp_path / "pins")
    assert pins.path("nothing", "/var/run/netns/gone") == "/var/run/netns/gone"
