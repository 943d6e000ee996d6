"""Status condition helpers: foreign conditions untouched, newer observedGeneration respected,
lastTransitionTime kept unless the status flips, transitions reported."""

from __future__ import annotations

import datetime

from multinet.api import conditions
from multinet.api.conditions import Desired

T0 = datetime.datetime(2025, 1, 1, 12, 0, tzinfo=datetime.UTC)
T1 = T0 + datetime.timedelta(minutes=5)

FOREIGN = {
    "type": "example.com/Healthy",
    "status": "True",
    "lastTransitionTime": "2024-01-01T00:00:00Z",
    "reason": "Fine",
    "message": "written by someone else",
    "observedGeneration": 99,
}


def ready(status: conditions.Status = "True", reason: str = "Ready", gen: int = 1) -> Desired:
    return Desired("Ready", status, reason, f"{reason} message", gen)


def test_append_to_empty() -> None:
    out = conditions.set_conditions(None, [ready()], now=T0)
    assert out.changed
    assert out.conditions == [
        {
            "type": "Ready",
            "status": "True",
            "observedGeneration": 1,
            "lastTransitionTime": "2025-01-01T12:00:00Z",
            "reason": "Ready",
            "message": "Ready message",
        }
    ]
    assert out.transitions == (ready(),)


def test_foreign_conditions_untouched_and_in_place() -> None:
    current = [dict(FOREIGN), {"type": "Other", "status": "Unknown", "x-extra": 1}]
    out = conditions.set_conditions(current, [ready()], now=T0)
    assert out.conditions[0] == FOREIGN
    assert out.conditions[1] == {"type": "Other", "status": "Unknown", "x-extra": 1}
    assert out.conditions[2]["type"] == "Ready"
    assert current == [FOREIGN, {"type": "Other", "status": "Unknown", "x-extra": 1}]  # input kept


def test_same_condition_again_is_no_change() -> None:
    first = conditions.set_conditions([], [ready()], now=T0).conditions
    again = conditions.set_conditions(first, [ready()], now=T1)
    assert not again.changed
    assert again.transitions == ()


def test_flip_moves_transition_time() -> None:
    first = conditions.set_conditions([], [ready()], now=T0).conditions
    out = conditions.set_conditions(first, [ready("False", "ParametersInvalid", 2)], now=T1)
    (cond,) = out.conditions
    assert cond["lastTransitionTime"] == "2025-01-01T12:05:00Z"
    assert (cond["status"], cond["reason"], cond["observedGeneration"]) == (
        "False",
        "ParametersInvalid",
        2,
    )
    assert out.transitions == (ready("False", "ParametersInvalid", 2),)


def test_reason_change_without_flip_keeps_time_but_is_a_transition() -> None:
    first = conditions.set_conditions([], [ready("False", "AdministrativelyDisabled")], now=T0)
    out = conditions.set_conditions(
        first.conditions, [ready("False", "ParametersInvalid", 2)], now=T1
    )
    assert out.conditions[0]["lastTransitionTime"] == "2025-01-01T12:00:00Z"
    assert out.transitions == (ready("False", "ParametersInvalid", 2),)


def test_new_generation_same_status_updates_observed_generation_only() -> None:
    first = conditions.set_conditions([], [ready()], now=T0).conditions
    out = conditions.set_conditions(first, [ready(gen=5)], now=T1)
    assert out.changed
    assert out.transitions == ()
    assert out.conditions[0]["observedGeneration"] == 5
    assert out.conditions[0]["lastTransitionTime"] == "2025-01-01T12:00:00Z"


def test_newer_observed_generation_is_not_touched() -> None:
    first = conditions.set_conditions([], [ready(gen=7)], now=T0).conditions
    out = conditions.set_conditions(first, [ready("False", "ParametersInvalid", 6)], now=T1)
    assert not out.changed
    assert out.skipped == ("Ready",)
    assert out.conditions == first


def test_several_types_at_once() -> None:
    out = conditions.set_conditions(
        [FOREIGN],
        [ready(), Desired("DeviceClassReady", "False", "NameTaken", "taken", 1)],
        now=T0,
    )
    assert [c["type"] for c in out.conditions] == [
        "example.com/Healthy",
        "Ready",
        "DeviceClassReady",
    ]
    assert conditions.is_true(out.conditions, "Ready")
    assert not conditions.is_true(out.conditions, "DeviceClassReady")


def test_long_message_is_cut_to_the_schema_limit() -> None:
    out = conditions.set_conditions([], [Desired("Ready", "False", "X", "m" * 40000, 1)], now=T0)
    assert len(out.conditions[0]["message"]) == conditions.MAX_MESSAGE
