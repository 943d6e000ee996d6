"""The nodes of a many-node cluster: names, addresses and pod ranges. Pure: numbers in, specs out.

With `--nodes 1` (the default) the one node is this machine itself, as before. With N >= 2 every
node is a sandbox (see sandbox.py) on its own network namespace, named like the node::

    node          netns         eth0 (on the mnlc-tor bridge)   pods
    mnlc-node-1   mnlc-node-1   198.18.255.11/24                10.88.1.0/24
    mnlc-node-2   mnlc-node-2   198.18.255.12/24                10.88.2.0/24

The host is 198.18.255.1 on the bridge (each node's default gateway) and serves the API on its
own address. Each node routes the other nodes' pod ranges straight to them over the bridge, so
pods talk across nodes without the host forwarding anything.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from . import layout as L

MAX_NODES = 9
NODE_PREFIX = "mnlc-node-"


@dataclass(frozen=True)
class NodeSpec:
    name: str
    index: int

    @property
    def ip(self) -> str:
        return f"{L.NODE_SUBNET_PREFIX}.{10 + self.index}"

    @property
    def pod_cidr(self) -> str:
        return f"10.88.{self.index}.0/24"

    @property
    def pod_gateway(self) -> str:
        return f"10.88.{self.index}.1"

    @property
    def tor_port(self) -> str:
        """The host end of the node's link to the top-of-rack bridge."""
        return f"mnlc-tor{self.index}"


def node_specs(count: int) -> tuple[NodeSpec, ...]:
    """The sandbox nodes of a `count`-node cluster; empty for 1 (the host is the node)."""
    if not 1 <= count <= MAX_NODES:
        raise ValueError(f"--nodes must be between 1 and {MAX_NODES}, not {count}")
    if count == 1:
        return ()
    return tuple(NodeSpec(f"{NODE_PREFIX}{i}", i) for i in range(1, count + 1))


def lab_port(node: str, nic: str) -> str:
    """The host end (on the lab bridge) of a NIC given to a node: short, stable, unique enough."""
    return "mnlab" + hashlib.sha256(f"{node}/{nic}".encode()).hexdigest()[:9]
