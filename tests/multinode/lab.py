"""Veth NICs for sandbox nodes in the many-node tests."""

from __future__ import annotations

import secrets

from localcluster import sandbox


class LabNics:
    """Gives nodes veth NICs on the lab bridge; removes them (wherever their node end is)."""

    def __init__(self) -> None:
        self.made: list[tuple[str, str]] = []
        self.prefix = f"lab{secrets.token_hex(2)}"

    def add(self, node: str, suffix: str = "0") -> str:
        """A NIC named <prefix><suffix> in `node`; the same name on every node by default."""
        name = f"{self.prefix}{suffix}"
        sandbox.add_nic(node, name)
        self.made.append((node, name))
        return name

    def cleanup(self) -> None:
        for node, name in self.made:
            sandbox.remove_nic(node, name)
