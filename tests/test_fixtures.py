"""The shared test helpers do what their docstrings promise: wait_for returns the truthy value or
fails naming what it waited for; make_nic's veths carry the asked addresses and MTU and are gone
after cleanup, also when a NIC was moved into another netns and back."""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator

import pytest
from helpers import NicFactory, link_exists, wait_for


def test_wait_for_returns_the_first_truthy_value() -> None:
    values = iter([0, None, "", "ready"])
    assert wait_for(lambda: next(values), timeout=5, interval=0.01, what="x") == "ready"


def test_wait_for_names_what_and_the_last_value_when_it_times_out() -> None:
    with pytest.raises(AssertionError, match=r"after 0.2 s waiting for the answer; last: \[\]"):
        wait_for(list, timeout=0.2, interval=0.05, what="the answer")
    with pytest.raises(AssertionError, match=r"last: KeyError\('missing'\)"):
        wait_for(lambda: dict[str, int]()["missing"], timeout=0.1, interval=0.05, what="a key")


@pytest.fixture
def nics() -> Iterator[NicFactory]:
    factory = NicFactory()
    yield factory
    factory.cleanup()


def _link(name: str, netns: str | None = None) -> dict[str, object]:
    argv = ["ip", "-j", "addr", "show", "dev", name]
    if netns:
        argv = ["ip", "-n", netns, *argv[1:]]
    data: list[dict[str, object]] = json.loads(
        subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    )
    return data[0]


@pytest.mark.root
def test_make_nic_creates_both_ends_with_addresses_and_mtu(nics: NicFactory) -> None:
    nic = nics(prefix="fxt", addresses=["198.18.201.9/32"], mtu=1350)
    assert nic.name.startswith("fxt") and len(nic.name) == 9 and nic.peer == f"{nic.name}p"
    link = _link(nic.name)
    assert link["mtu"] == 1350 and _link(nic.peer)["mtu"] == 1350
    addrs = [f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"]]  # type: ignore[attr-defined]
    assert "198.18.201.9/32" in addrs
    assert "UP" in link["flags"]  # type: ignore[operator]
    nics.cleanup()
    assert not link_exists(nic.name) and not link_exists(nic.peer)


@pytest.mark.root
def test_cleanup_finds_a_nic_that_went_into_a_netns_and_came_back(nics: NicFactory) -> None:
    netns = f"fxt{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        nic = nics(prefix="fxt")
        subprocess.run(["ip", "link", "set", nic.name, "netns", netns], check=True)
        assert not link_exists(nic.name) and _link(nic.name, netns)
        subprocess.run(["ip", "-n", netns, "link", "set", nic.name, "netns", "1"], check=True)
        assert link_exists(nic.name)
        nics.cleanup()
        assert not link_exists(nic.name) and not link_exists(nic.peer)
    finally:
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)
