"""Malformed documents become ConfigErrors naming the field, never stray exceptions.

Cases: ``problems.show`` on values nested thousands of levels deep, huge, or with a failing
``__str__`` (and on ordinary JSON it still matches ``json.dumps``); such values inside PodNetwork
parameters and claim config; PodNetwork objects of every wrong shape are judged without raising,
and the node agent's watcher keeps serving the good networks next to them; ResourceClaims whose
fields have the wrong type are reported field by field.
"""

from __future__ import annotations

import json
import time
from typing import Any
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

from multinet.api import allocation, claimconfig, parameters, podnetwork, problems
from multinet.devices import binding, networks
from multinet.errors import ClaimError, ConfigError
from multinet.kube.podnetworks import PodNetworkWatcher
from multinet.plans import ClaimRef

DEPTH = 50_000  # far beyond Python's recursion limit


def deep_list(depth: int = DEPTH) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


def deep_dict(depth: int = DEPTH) -> Any:
    value: Any = {}
    for _ in range(depth):
        value = {"a": value}
    return value


# -- problems.show ---------------------------------------------------------------------------


class _Hostile:
    def __str__(self) -> str:
        raise RuntimeError("no")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (deep_list(), "[" * 77 + "..."),
        (deep_dict(), '{"a": ' * 12 + '{"a":...'),
        ({"x": _Hostile()}, "<dict>"),
        (10**5000, "<int>"),
        (["eth1"], '["eth1"]'),
    ],
    ids=["deep list", "deep dict", "failing __str__", "huge int", "plain"],
)
def test_show_quotes_any_value_in_at_most_80_characters(value: Any, expected: str) -> None:
    assert problems.show(value) == expected


def test_show_reads_no_more_of_a_huge_list_than_it_quotes() -> None:
    huge = list(range(5_000_000))
    started = time.monotonic()
    assert problems.show(huge).endswith("...")
    assert time.monotonic() - started < 0.5


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=20,
)


@given(_json)
def test_show_of_ordinary_json_is_what_json_dumps_writes(value: Any) -> None:
    text = json.dumps(value, sort_keys=True)
    assert problems.show(value) == (text if len(text) <= 80 else text[:77] + "...")


# -- configuration documents -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (deep_list(), "parameters: must be an object, got [[["),
        (
            {"interfaces": {"names": deep_list()}},
            'parameters.interfaces.names[0]: must be a string like "eth1" or "ens*", got [[[',
        ),
        (
            {"interfaces": {"names": ["eth1"]}, "mtu": deep_dict()},
            'parameters.mtu: must be an integer, got {"a": {"a":',
        ),
        (
            {"interfaces": {"names": ["eth1"]}, "routes": [{"destination": deep_list()}]},
            'parameters.routes[0].destination: must be a string like "10.1.0.0/24", got [[[',
        ),
    ],
    ids=["document", "names", "mtu", "route"],
)
def test_deeply_nested_parameters_name_the_field(document: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parameters.parse(document)
    (error,) = info.value.errors
    assert error.startswith(expected) and len(error) < 200


NET = parameters.parse({"interfaces": {"names": ["eth*"]}})


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (deep_list(), "config[0]: must be an object, got [[["),
        ({"addresses": deep_list()}, 'config[0].addresses[0]: must be a string like "10.1.0.5/24"'),
        ({"mac": deep_dict()}, 'config[0].mac: must be a string like "02:00:00:00:00:01"'),
        ({"routes": [deep_dict()]}, "config[0].routes[0].a: unknown field"),
    ],
    ids=["document", "addresses", "mac", "route"],
)
def test_deeply_nested_claim_config_names_the_field(document: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        claimconfig.effective_config(
            NET, [], [claimconfig.OpaqueConfig(document, 0)], claim="ns/c", request="nic"
        )
    assert any(e.startswith(expected) for e in info.value.errors), info.value.errors


def test_deeply_nested_podnetwork_status_names_the_field() -> None:
    body = {
        "metadata": {"name": "n"},
        "spec": {"provider": "multinet.dev"},
        "status": {"conditions": [{"type": deep_list()}]},
    }
    with pytest.raises(ConfigError) as info:
        podnetwork.parse(body)
    assert info.value.errors[0].startswith("status.conditions[0].type: must be a string, got [[")


# -- PodNetworks as the node agent sees them ---------------------------------------------------

READY = {
    "conditions": [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Checked",
            "message": "",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }
    ]
}


def pnw(name: str, params: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"provider": "multinet.dev", "parameters": params},
        "status": READY,
    }


GOOD = pnw("good", {"interfaces": {"names": ["eth1"]}})

UNNAMED: list[Any] = [
    None,
    5,
    "x",
    [],
    ["metadata"],
    {"metadata": "x"},
    {"metadata": ["name"]},
    {"metadata": {"name": 5}},
    {"metadata": {"name": deep_list()}},
    {"spec": {"provider": "multinet.dev"}},
]


@pytest.mark.parametrize("body", UNNAMED, ids=[f"unnamed{i}" for i in range(len(UNNAMED))])
def test_unreadable_objects_without_a_name_are_skipped(body: Any) -> None:
    assert networks.judge(body) is None


NAMED_BAD: list[tuple[str, Any, str]] = [
    ("spec list", {"metadata": {"name": "bad"}, "spec": []}, "invalid object: spec: must be"),
    ("status str", {**GOOD, "metadata": {"name": "bad"}, "status": "x"}, "invalid object: status"),
    (
        "deep parameters",
        pnw("bad", {"interfaces": {"names": deep_list()}}),
        "invalid parameters: parameters.interfaces.names[0]: must be a string",
    ),
    ("parameters list", pnw("bad", ["eth1"]), "invalid object: spec.parameters: must be an obj"),
    (
        "deep condition",
        {**GOOD, "metadata": {"name": "bad"}, "status": {"conditions": [{"type": deep_dict()}]}},
        'invalid object: status.conditions[0].type: must be a string, got {"a": {"a":',
    ),
]


@pytest.mark.parametrize(
    ("case", "body", "reason"), NAMED_BAD, ids=[case for case, _, _ in NAMED_BAD]
)
def test_malformed_networks_bind_nothing_and_say_why(case: str, body: Any, reason: str) -> None:
    verdict = networks.judge(body)
    assert verdict is not None and verdict.name == "bad" and verdict.selector is None
    assert verdict.reason.startswith(reason), verdict.reason


class _Raw(str):
    """Text to emit as it is (see `_json_text`)."""


def _json_text(value: Any) -> str:
    """`json.dumps` without recursion: what the apiserver sends for documents nested deeper than
    Python's own encoder (and decoder) follow."""
    out: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Raw):
            out.append(item)
        elif isinstance(item, list):
            out.append("[")
            parts: list[Any] = []
            for i, v in enumerate(item):
                parts += [_Raw(",")] if i else []
                parts.append(v)
            stack += [_Raw("]"), *reversed(parts)]
        elif isinstance(item, dict):
            out.append("{")
            parts = []
            for i, (k, v) in enumerate(item.items()):
                parts += [_Raw(",")] if i else []
                parts += [_Raw(json.dumps(k) + ":"), v]
            stack += [_Raw("}"), *reversed(parts)]
        else:
            out.append(json.dumps(item))
    return "".join(out)


class _Response:
    status, reason = 200, "OK"

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    async def read(self) -> bytes:
        return self.raw

    def release(self) -> None:
        pass


class _Custom:
    """The list call as the apiserver answers it: raw JSON, decoded by the watcher itself."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items

    async def list_cluster_custom_object(self, *args: Any, **kwargs: Any) -> _Response:
        doc = {"metadata": {"resourceVersion": "7"}, "items": self.items}
        return _Response(_json_text(doc).encode())


def test_the_fake_apiserver_encodes_like_json() -> None:
    doc = {"a": [1, "x", {"b": None, "c": [True, 2.5]}], "d": {}}
    assert json.loads(_json_text(doc)) == doc


async def test_one_bad_podnetwork_does_not_stop_the_agent_serving_the_others() -> None:
    items = [*UNNAMED, *(body for _, body, _ in NAMED_BAD), GOOD]
    watcher = PodNetworkWatcher(mock.MagicMock(), node_name="node-1")
    watcher._custom = _Custom(items)
    assert await watcher._list() == "7"
    assert watcher.synced.is_set() and watcher.changed.is_set()
    assert watcher.selectors == (
        binding.NetworkSelector(name="good", interfaces=("eth1",), mode="host-device"),
    )


async def test_a_network_that_cannot_be_judged_is_logged_and_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    other = pnw("other", {"interfaces": {"names": ["eth2"]}})
    watcher = PodNetworkWatcher(mock.MagicMock(), node_name="node-1")
    watcher._custom = _Custom([other, GOOD])
    real = networks.judge

    def judge(body: Any) -> networks.Verdict | None:
        if body == other:  # decoded afresh from the list, so equal, not the same object
            raise RuntimeError("bug")
        return real(body)

    with mock.patch.object(networks, "judge", judge):
        await watcher._list()
    assert [s.name for s in watcher.selectors] == ["good"]
    assert "cannot judge PodNetwork other" in caplog.text


# -- ResourceClaims as NodePrepareResources reads them ----------------------------------------

CLAIM = ClaimRef(namespace="ns", name="c", uid="u1")


def claim_doc(**status: Any) -> dict[str, Any]:
    devices = {
        "results": [
            {"request": "nic", "driver": "multinet.dev", "pool": "node-1", "device": "eth1"},
            {"request": "gpu", "driver": "gpu.example.com", "pool": "node-1", "device": "g0"},
        ],
        "config": [
            {"source": "FromClass", "opaque": {"driver": "multinet.dev", "parameters": {}}},
            {
                "source": "FromClaim",
                "requests": ["nic"],
                "opaque": {"driver": "multinet.dev", "parameters": {"mtu": 9000}},
            },
        ],
    }
    return {
        "metadata": {"uid": "u1"},
        "status": {
            "allocation": {"devices": devices},
            "reservedFor": [{"resource": "pods", "name": "p", "uid": "pu"}],
            **status,
        },
    }


def test_a_well_formed_claim_is_read() -> None:
    alloc = allocation.parse(claim_doc(), CLAIM)
    assert alloc.results == (allocation.Result("nic", "node-1", "eth1", None),)
    assert alloc.class_configs == (claimconfig.OpaqueConfig({}, 0),)
    assert alloc.claim_configs == (claimconfig.OpaqueConfig({"mtu": 9000}, 1, ("nic",)),)
    assert alloc.pods == (allocation.PodRef("p", "pu"),)


def test_a_claim_that_is_gone_recreated_or_unallocated_is_a_claim_error() -> None:
    for doc, text in [
        (None, "not found"),
        ({"metadata": {"uid": "other"}}, "metadata.uid is other"),
        ({"metadata": {"uid": "u1"}, "status": {"allocation": {}}}, "not allocated"),
    ]:
        with pytest.raises(ClaimError, match=text):
            allocation.parse(doc, CLAIM)


def _devices(**over: Any) -> dict[str, Any]:
    doc = claim_doc()
    doc["status"]["allocation"]["devices"].update(over)
    return doc


WRONG_SHAPES: list[tuple[str, Any, list[str]]] = [
    ("document", ["x"], ['ResourceClaim: must be an object, got ["x"]']),
    ("metadata", {"metadata": "x"}, ['metadata: must be an object, got "x"']),
    ("uid", {"metadata": {"uid": 5}}, ["metadata.uid: must be a string, got 5"]),
    ("status", {"metadata": {"uid": "u1"}, "status": []}, ["status: must be an object, got []"]),
    (
        "allocation",
        {"metadata": {"uid": "u1"}, "status": {"allocation": [1]}},
        ["status.allocation: must be an object, got [1]"],
    ),
    (
        "results",
        _devices(results="eth1"),
        ['status.allocation.devices.results: must be a list, got "eth1"'],
    ),
    (
        "result entry",
        _devices(results=[3]),
        ["status.allocation.devices.results[0]: must be an object, got 3"],
    ),
    (
        "result fields",
        _devices(results=[{"driver": "multinet.dev", "pool": ["p"], "shareID": 1}]),
        [
            'status.allocation.devices.results[0].pool: must be a string, got ["p"]',
            "status.allocation.devices.results[0].shareID: must be a string, got 1",
        ],
    ),
    (
        "config entry",
        _devices(config=["x"]),
        ['status.allocation.devices.config[0]: must be an object, got "x"'],
    ),
    (
        "config requests",
        _devices(config=[{"requests": 5, "opaque": {"driver": "multinet.dev"}}]),
        ["status.allocation.devices.config[0].requests: must be a list, got 5"],
    ),
    (
        "opaque driver",
        _devices(config=[{"opaque": {"driver": deep_list()}}]),
        ["status.allocation.devices.config[0].opaque.driver: must be a string, got " + "[" * 77],
    ),
    (
        "reservedFor",
        claim_doc(reservedFor=[{"resource": "pods", "uid": None}]),
        ["status.reservedFor[0].uid: must be a string, got null"],
    ),
]


@pytest.mark.parametrize(
    ("case", "doc", "expected"), WRONG_SHAPES, ids=[case for case, _, _ in WRONG_SHAPES]
)
def test_a_claim_of_the_wrong_shape_names_the_field(
    case: str, doc: Any, expected: list[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        allocation.parse(doc, CLAIM)
    assert [e.removesuffix("...") for e in info.value.errors] == expected
    assert str(info.value).startswith("claim ns/c: ")


def test_split_allocation_configs_names_the_field_of_a_wrong_entry() -> None:
    with pytest.raises(ConfigError) as info:
        claimconfig.split_allocation_configs(
            [{"opaque": {"driver": "multinet.dev"}}, {"opaque": "x"}], prefix="devices.config"
        )
    assert info.value.errors == ['devices.config[1].opaque: must be an object, got "x"']
