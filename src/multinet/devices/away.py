"""Devices away in pods: keep publishing a NIC the agent moved into a pod's network namespace.

A host-device NIC moved into a pod disappears from the host snapshot, but it is allocated and
the pool must not flap, so the devices the agent names as away are put back into the snapshot
with the facts last seen on the host (or recorded by the attach before the move). Pure: the
caller (``multinet.agent.publish``) owns the memory of what it has seen and passes it in.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import replace

from multinet.devices import naming
from multinet.devices.model import HostSnapshot, Link


def with_away_devices(
    snapshot: HostSnapshot,
    seen: Mapping[str, Link],
    away: Set[str],
    recorded: Mapping[str, Link],
) -> tuple[HostSnapshot, dict[str, Link]]:
    """``snapshot`` plus the away devices not in it, and the new ``seen`` (device name -> link).

    ``seen``: links last seen on the host, by device name (the previous call's result);
    ``away``: names of devices in pods now; ``recorded``: the links the attach recorded for them.
    """
    names = naming.assign_names(snapshot.links)
    present = set(names.values())
    last_seen = dict(seen)
    # What the attach recorded before the move is the truth for a NIC in a pod: a snapshot
    # taken mid-move shows it stripped (the kernel drops IPv4 addresses as it leaves), and
    # after a restart this process never saw it on the host at all.
    for link in snapshot.links:
        name = names[link.index]
        if name not in recorded:
            last_seen[name] = link
    last_seen.update({n: recorded[n] for n in away - present if n in recorded})
    missing = [n for n in away if n not in present and n in last_seen]
    if missing:
        kept = tuple(
            # Negative indexes cannot clash with the kernel's; topology no longer applies.
            replace(last_seen[n], index=-(i + 1), master=None, peer=None, peer_netns=False)
            for i, n in enumerate(sorted(missing))
        )
        snapshot = replace(snapshot, links=snapshot.links + kept)
    current = away | present
    return snapshot, {n: link for n, link in last_seen.items() if n in current}
