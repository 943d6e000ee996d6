"""Fixtures of the many-node tests: a 3-node local cluster (each node a sandbox with its own netns,
mounts and hostname) running multinet as users run it, deploy/base's Deployment and DaemonSet as
pods from the image `make image` builds.

These tests run last in a session (tests/conftest.py orders them): bringing up three nodes takes
the single-node cluster of the other tests down.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from collections.abc import Iterator

import pytest
import support
from lab import LabNics
from localcluster import Cluster, down, up
from localcluster import multinet as deployment

NODES = 3


@pytest.fixture(scope="session")
def nodes3() -> Iterator[Cluster]:
    handle = Cluster.load()
    handle.state_dir.mkdir(parents=True, exist_ok=True)
    with handle.layout.users_lock_file.open("a") as users:
        fcntl.flock(users, fcntl.LOCK_SH)
        cluster = up(say=lambda m: print(f"[localcluster] {m}", flush=True), nodes=NODES)
        try:
            deployment.deploy(cluster, say=lambda s: print(f"[multinet] {s}", flush=True))
            yield cluster
        finally:
            fcntl.flock(users, fcntl.LOCK_UN)
            kept = os.environ.get("MULTINET_KEEP_CLUSTER") or cluster.layout.keep_file.exists()
            if cluster.started_here and not kept:
                down()


@pytest.fixture
def namespace(nodes3: Cluster) -> Iterator[str]:
    name = f"mn-{secrets.token_hex(3)}"
    support.create_namespace(nodes3, name)
    try:
        yield name
    finally:
        nodes3.kubectl("delete", "namespace", name, "--wait=true", "--timeout=180s", check=False)


@pytest.fixture
def lab_nics(nodes3: Cluster) -> Iterator[LabNics]:
    nics = LabNics()
    try:
        yield nics
    finally:
        nics.cleanup()
