"""Detecting consumable capacity: the agent's dry-run probe and what it decides from the answer.

The local cluster runs Kubernetes 1.36, where DRAConsumableCapacity is on; an apiserver that drops
the alpha fields (1.34, 1.35) cannot be caused there, nor can one that is unreachable on demand.
So the apiserver is a stand-in here that answers the way each would: it returns the dry-run
object with the fields kept or dropped (as the real strategy does before validation), or fails
the way the client fails.

Cases: the probe body is this node's slice of our driver with one shared device rendered as the
publisher renders it, created as a dry run; fields kept -> consumable capacity; fields dropped ->
slot devices; a refusal (422, 403) or an unreadable answer -> slot devices, final; an unreachable
or busy apiserver -> slot devices meanwhile, asked again with backoff until it answers, and the
answer is handed on; through the real client, the request is a dry run (``dryRun=All``) to the
v1 slices and an HTTP refusal is one too.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from multinet.devices.binding import INTERFACES_CAPACITY
from multinet.devices.slots import Sharing
from multinet.kube import features
from multinet.retry import Backoff

NODE = "node-a"


class FakeApiserver:
    """Answers the dry-run create as an apiserver would: the object as it would have stored it
    (alpha fields dropped when ``consumable_capacity`` is off), or the client's exception."""

    def __init__(self, *, consumable_capacity: bool, failures: list[Exception] | None = None):
        self.consumable_capacity = consumable_capacity
        self.failures = failures or []
        self.bodies: list[dict[str, Any]] = []

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        self.bodies.append(body)
        if self.failures:
            raise self.failures.pop(0)
        stored = copy.deepcopy(body)
        stored["metadata"] = {"name": body["metadata"]["generateName"] + "x7k2p", "uid": "u"}
        if not self.consumable_capacity:  # what the strategy drops with the gate off
            for device in stored["spec"]["devices"]:
                device.pop("allowMultipleAllocations", None)
                for capacity in device.get("capacity", {}).values():
                    capacity.pop("requestPolicy", None)
        return stored


def detector(apiserver: FakeApiserver) -> features.SharingDetector:
    return features.SharingDetector(
        None, NODE, create=apiserver.create, backoff=Backoff(initial=0.001, cap=0.001)
    )


def test_the_probe_is_this_nodes_slice_of_our_driver_with_one_shared_device() -> None:
    body = features.probe_body(NODE)
    spec = body["spec"]
    assert (spec["driver"], spec["nodeName"]) == ("multinet.dev", NODE)
    assert spec["pool"]["resourceSliceCount"] == 1
    (device,) = spec["devices"]
    assert device["allowMultipleAllocations"] is True
    assert device["capacity"][INTERFACES_CAPACITY]["requestPolicy"]["default"] == "1"
    assert "generateName" in body["metadata"]


async def test_fields_kept_mean_consumable_capacity() -> None:
    apiserver = FakeApiserver(consumable_capacity=True)
    assert await detector(apiserver).detect() is Sharing.CONSUMABLE_CAPACITY
    assert apiserver.bodies[0]["spec"]["nodeName"] == NODE


async def test_fields_dropped_mean_slot_devices(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="multinet.kube.features")
    found = detector(FakeApiserver(consumable_capacity=False))
    assert await found.detect() is Sharing.SLOT_DEVICES
    assert found.last is not None and found.last.settled
    (record,) = caplog.records
    assert "published as 64 slot devices, one pod per slot" in record.getMessage()
    assert "dropped allowMultipleAllocations" in record.getMessage()


@pytest.mark.parametrize(
    "answer", [None, [], {"spec": None}, {"spec": {"devices": []}}, {"spec": {"devices": ["x"]}}]
)
def test_an_answer_without_the_device_means_slot_devices(answer: Any) -> None:
    assert features.decide(answer).sharing is Sharing.SLOT_DEVICES


@pytest.mark.parametrize(
    ("status", "settled"), [(422, True), (403, True), (404, True), (429, False), (503, False)]
)
async def test_a_refused_probe_means_slot_devices(status: int, settled: bool) -> None:
    failing = FakeApiserver(consumable_capacity=True, failures=[ApiException(status=status)])
    found = detector(failing)
    assert await found.detect() is Sharing.SLOT_DEVICES
    assert found.last is not None and found.last.settled is settled


async def test_an_unreachable_apiserver_is_asked_again_until_it_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    down = [aiohttp.ClientConnectionError("connection refused"), TimeoutError()]
    found = detector(FakeApiserver(consumable_capacity=True, failures=down))
    assert await found.detect() is Sharing.SLOT_DEVICES  # meanwhile, the form that works
    assert "cannot tell" in caplog.records[-1].getMessage()
    used: list[Sharing] = []

    await asyncio.wait_for(found.settle(used.append), timeout=5)

    assert used == [Sharing.CONSUMABLE_CAPACITY]
    assert found.last is not None and found.last.settled


async def test_a_settled_answer_is_not_asked_again() -> None:
    apiserver = FakeApiserver(consumable_capacity=False)
    found = detector(apiserver)
    await found.detect()
    used: list[Sharing] = []
    await asyncio.wait_for(found.settle(used.append), timeout=5)
    assert used == [] and len(apiserver.bodies) == 1


async def test_an_answer_that_is_not_json_means_slot_devices() -> None:
    async def garbage(body: dict[str, Any]) -> Any:
        raise ValueError("Expecting value: line 1 column 1 (char 0)")

    found = features.SharingDetector(None, NODE, create=garbage)
    assert await found.detect() is Sharing.SLOT_DEVICES


async def test_the_real_client_sends_a_dry_run_to_a_fake_apiserver() -> None:
    """Over HTTP, against a fake apiserver that echoes what it is sent (or refuses it)."""
    seen: list[tuple[str, dict[str, str], Any]] = []
    refuse = False

    async def resourceslices(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append((request.path, dict(request.query), body))
        if refuse:
            return web.json_response({"kind": "Status", "code": 403}, status=403)
        return web.json_response(body)

    app = web.Application()
    app.router.add_post("/apis/resource.k8s.io/v1/resourceslices", resourceslices)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    api = client.ApiClient(client.Configuration(host=f"http://127.0.0.1:{port}"))
    try:
        assert await features.SharingDetector(api, NODE).detect() is Sharing.CONSUMABLE_CAPACITY
        path, query, body = seen[0]
        assert (path, query) == ("/apis/resource.k8s.io/v1/resourceslices", {"dryRun": "All"})
        assert body == features.probe_body(NODE)
        refuse = True
        found = features.SharingDetector(api, NODE)
        assert await found.detect() is Sharing.SLOT_DEVICES
        assert found.last is not None and found.last.settled  # 403: asking again will not help
    finally:
        await api.close()
        await runner.cleanup()
