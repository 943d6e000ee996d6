"""Status conditions (metav1.Condition shape, raw dicts) changed without disturbing anyone else's.

The controller owns a few condition types; other controllers may add their own to the same list.
``set_condition`` replaces or appends one type and returns a new list in which every other entry is
the very same dict, in the same order. It leaves a condition alone when that condition's
``observedGeneration`` is newer than the generation the caller based its decision on (someone saw a
later spec than we did), and it keeps ``lastTransitionTime`` unless the status actually flips.
An ``Absent`` entry removes a type of ours that no longer applies (``Sharing`` of a network that
is no longer shared).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

Status = Literal["True", "False", "Unknown"]
MAX_MESSAGE = 32768  # metav1.Condition.message maxLength
MAX_CONDITIONS = 8  # the CRD's maxItems


@dataclasses.dataclass(frozen=True)
class Desired:
    """A condition the controller wants to see, computed from a spec of ``generation``."""

    type: str
    status: Status
    reason: str
    message: str
    generation: int


@dataclasses.dataclass(frozen=True)
class Absent:
    """A condition type of ours that no longer applies: removed when present."""

    type: str


@dataclasses.dataclass(frozen=True)
class Outcome:
    conditions: list[dict[str, Any]]
    changed: bool
    """True when the list differs from the input (a write is needed)."""
    transitions: tuple[Desired, ...]
    """Conditions whose status or reason changed (worth an Event)."""
    skipped: tuple[str, ...]
    """Types left alone because their observedGeneration is newer than ours."""


def timestamp(now: datetime.datetime) -> str:
    return now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def find(conditions: Iterable[Mapping[str, Any]], type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def is_true(conditions: Iterable[Mapping[str, Any]], type_: str) -> bool:
    found = find(conditions, type_)
    return found is not None and found.get("status") == "True"


def _render(want: Desired, transition_time: str) -> dict[str, Any]:
    return {
        "type": want.type,
        "status": want.status,
        "observedGeneration": want.generation,
        "lastTransitionTime": transition_time,
        "reason": want.reason,
        "message": want.message[:MAX_MESSAGE],
    }


def set_conditions(
    current: Sequence[Mapping[str, Any]] | None,
    wanted: Iterable[Desired | Absent],
    *,
    now: datetime.datetime,
) -> Outcome:
    """Apply each ``wanted`` condition to ``current`` (which is not modified)."""
    result: list[dict[str, Any]] = [dict(c) for c in current or ()]
    originals = [dict(c) for c in current or ()]
    transitions: list[Desired] = []
    skipped: list[str] = []
    for want in wanted:
        if isinstance(want, Absent):
            result = [c for c in result if c.get("type") != want.type]
            continue
        index = next((i for i, c in enumerate(result) if c.get("type") == want.type), None)
        if index is None:
            result.append(_render(want, timestamp(now)))
            transitions.append(want)
            continue
        old = result[index]
        seen = old.get("observedGeneration")
        if isinstance(seen, int) and seen > want.generation:
            skipped.append(want.type)
            continue
        flipped = old.get("status") != want.status
        since = old.get("lastTransitionTime")
        if flipped or not since:
            since = timestamp(now)
        if flipped or old.get("reason") != want.reason:
            transitions.append(want)
        result[index] = _render(want, since)
    return Outcome(result, result != originals, tuple(transitions), tuple(skipped))
