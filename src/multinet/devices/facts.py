"""A host link's facts as plain JSON, so they can outlive the process that saw them.

Why: a host-device NIC inside a pod is not in the host netns, yet it stays advertised (it is
allocated; the pool must not flap). The agent records the link as last published when the NIC
moves into a pod, and rebuilds the device from that record after a restart.

The record is a plain dict rather than a typed field of the checkpoint on purpose: ``Link`` is
an internal shape that may grow. Unknown keys are ignored and a record that no longer fits gives
``None`` (the device is then missing until it comes back, as before), so a change here can never
make the whole checkpoint unreadable.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import TypeAdapter, ValidationError

from multinet.devices.model import Link

log = logging.getLogger(__name__)

_LINK: TypeAdapter[Link] = TypeAdapter(Link)


def to_facts(link: Link) -> dict[str, Any]:
    """JSON-ready facts of ``link`` (nested hardware included)."""
    facts: dict[str, Any] = _LINK.dump_python(link, mode="json")
    return facts


def from_facts(facts: dict[str, Any]) -> Link | None:
    """The link recorded by ``to_facts``; None (logged) when the record does not fit any more."""
    try:
        return _LINK.validate_python(facts)
    except ValidationError as exc:
        log.warning(
            "recorded link facts do not fit the current model, ignoring them: %s",
            exc,
            extra={"ifname": facts.get("ifname")},
        )
        return None
