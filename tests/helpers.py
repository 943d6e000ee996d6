"""Helpers shared by the test suite (`from helpers import wait_for`: tests/ is on pythonpath)."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T | None],
    *,
    timeout: float = 30.0,
    interval: float = 0.2,
    what: str = "condition",
) -> T:
    """Call `predicate` until it returns something truthy and return that value.

    Raises AssertionError naming `what`, the timeout and the last value (or the last exception
    the predicate raised) when `timeout` seconds pass first. Exceptions count as "not yet", so a
    predicate may look up an object that does not exist yet.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
        except Exception as exc:  # a lookup that fails is simply "not yet"
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:g} s waiting for {what}; last: {last!r}"
            )
        time.sleep(interval)


async def eventually(
    predicate: Callable[[], T],
    *,
    within: float = 30.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """`wait_for` for async tests: sleeps on the event loop, so the code under test runs."""
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {within:g} s waiting for {what}; last: {value!r}"
            )
        await asyncio.sleep(interval)


@dataclass(frozen=True)
class Nic:
    """A veth pair in the root netns: `name` is the "NIC" tests hand out, `peer` its far end."""

    name: str
    peer: str


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")


def link_exists(name: str) -> bool:
    """True if a link called `name` exists in the root netns."""
    out = subprocess.run(["ip", "-j", "link", "show", "dev", name], capture_output=True, text=True)
    return out.returncode == 0 and bool(json.loads(out.stdout or "[]"))


class NicFactory:
    """Makes veth "NICs" and removes every one of them again (the `make_nic` fixture)."""

    def __init__(self) -> None:
        self.made: list[Nic] = []

    def __call__(
        self,
        prefix: str = "mnt",
        addresses: Sequence[str] = (),
        mtu: int | None = None,
        up: bool = True,
    ) -> Nic:
        if not 1 <= len(prefix) <= 8:
            raise ValueError(f"prefix {prefix!r}: 1 to 8 characters (link names are <= 15)")
        name = f"{prefix}{secrets.token_hex(3)}"
        nic = Nic(name=name, peer=f"{name}p")
        extra = ["mtu", str(mtu)] if mtu else []
        _ip("link", "add", nic.name, *extra, "type", "veth", "peer", "name", nic.peer, *extra)
        self.made.append(nic)
        for addr in addresses:
            _ip("addr", "add", addr, "dev", nic.name)
        if up:
            _ip("link", "set", nic.peer, "up")
            _ip("link", "set", nic.name, "up")
        return nic

    def cleanup(self) -> None:
        """Delete both ends of every NIC made, wherever they still are in the root netns."""
        for nic in self.made:
            for end in (nic.name, nic.peer):
                if link_exists(end):
                    subprocess.run(["ip", "link", "del", end], capture_output=True)
        self.made.clear()
