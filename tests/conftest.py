"""Session fixtures on top of hack/localcluster: the real single-node cluster, an admin API client,
veth "NICs" on the node.

The cluster is shared: a running healthy cluster is reused; otherwise this session starts one and,
unless MULTINET_KEEP_CLUSTER is set, stops it at the end, but only if no other test session still
holds it (each session keeps a shared flock on <state>/users.lock while it runs).
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import pytest
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from localcluster import Cluster, down, up


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """The local cluster, up and Ready (started on demand; see the module docstring)."""
    handle = Cluster.load()
    handle.state_dir.mkdir(parents=True, exist_ok=True)
    with handle.layout.users_lock_file.open("a") as users:
        fcntl.flock(users, fcntl.LOCK_SH)
        started = up(say=lambda m: print(f"[localcluster] {m}", flush=True))
        try:
            yield started
        finally:
            fcntl.flock(users, fcntl.LOCK_UN)
            if started.started_here and not os.environ.get("MULTINET_KEEP_CLUSTER"):
                try:
                    fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    pass  # another session still uses it; the last one out does not own it
                else:
                    down()


@pytest.fixture(scope="session")
def k8s_api(cluster: Cluster) -> Iterator[k8s_client.ApiClient]:
    """A sync `kubernetes` ApiClient authenticated as cluster admin."""
    api = k8s_config.new_client_from_config(config_file=str(cluster.kubeconfig))
    try:
        yield api
    finally:
        api.close()


@dataclass(frozen=True)
class Nic:
    """A veth pair in the root netns: `name` is the "NIC" the tests hand out, `peer` its far end."""

    name: str
    peer: str


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")


def _link_exists(name: str) -> bool:
    out = subprocess.run(["ip", "-j", "link", "show", "dev", name], capture_output=True, text=True)
    return out.returncode == 0 and bool(json.loads(out.stdout or "[]"))


MakeNic = Callable[..., Nic]


@pytest.fixture
def make_nic() -> Iterator[MakeNic]:
    """Factory: make_nic(prefix="mnt", addresses=("192.0.2.10/24",), mtu=1400, up=True) -> Nic.

    Names are `<prefix><6 hex>` (peer: `<prefix><6 hex>p`), unique across concurrent sessions.
    At teardown both ends are deleted wherever they are in the root netns; a NIC moved into a pod
    netns and back, or destroyed with its netns, is tolerated.
    """
    made: list[Nic] = []

    def factory(
        prefix: str = "mnt",
        addresses: Sequence[str] = (),
        mtu: int | None = None,
        up: bool = True,
    ) -> Nic:
        if len(prefix) > 8:
            raise ValueError(f"prefix {prefix!r}: at most 8 characters (names are <= 15)")
        name = f"{prefix}{secrets.token_hex(3)}"
        nic = Nic(name=name, peer=f"{name}p")
        extra = ["mtu", str(mtu)] if mtu else []
        _ip("link", "add", nic.name, *extra, "type", "veth", "peer", "name", nic.peer, *extra)
        made.append(nic)
        for addr in addresses:
            _ip("addr", "add", addr, "dev", nic.name)
        if up:
            _ip("link", "set", nic.peer, "up")
            _ip("link", "set", nic.name, "up")
        return nic

    yield factory
    for nic in made:
        for end in (nic.name, nic.peer):
            if _link_exists(end):
                subprocess.run(["ip", "link", "del", end], capture_output=True)
