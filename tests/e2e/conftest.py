"""Fixtures for end-to-end tests: multinet deployed in the local cluster as users deploy it.

``multinet``: deploy/base applied (CRDs, RBAC, admission policy) and the controller and node agent
running as host processes under their own service accounts (localcluster.multinet). Reused when
already running. ``e2e_namespace``: a fresh namespace per test, deleted afterwards.
``network_cleanup``: names of PodNetworks a test made, deleted afterwards.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
import support
from localcluster import Cluster
from localcluster import multinet as deployment


@pytest.fixture(scope="session")
def multinet(cluster: Cluster) -> Cluster:
    deployment.deploy(cluster, say=lambda s: print(f"[multinet] {s}", flush=True))
    return cluster


@pytest.fixture
def e2e_namespace(multinet: Cluster) -> Iterator[str]:
    name = f"e2e-{secrets.token_hex(3)}"
    support.create_namespace(multinet, name)
    try:
        yield name
    finally:
        multinet.kubectl("delete", "namespace", name, "--wait=true", "--timeout=120s", check=False)


@pytest.fixture
def network_cleanup(multinet: Cluster) -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        multinet.kubectl("delete", "podnetwork", name, "--ignore-not-found", "--wait=false")
