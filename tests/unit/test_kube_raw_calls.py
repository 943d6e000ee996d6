"""The calls that read raw JSON responses (``_preload_content=False``).

CoreApi sends each core/v1 call as the generated CoreV1Api did: path, method, content type, JSON
body and bearer token, and reads plain JSON back. Every raw read turns an error status into an
ApiError, as a preloaded call does: the client itself checks the status only when it reads the
body, so a refused list used to read as an empty one.

The other end is a small aiohttp server standing in for the apiserver (the real one is
exercised by tests/cluster and tests/e2e: Events, the network-status annotation, slices,
claims, the PodNetwork watch)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from kubernetes_asyncio import client

from multinet.kube import watching
from multinet.kube.coreapi import CoreApi
from multinet.kube.errors import ApiError, NotFound, translated
from multinet.kube.lookups import ApiLookups
from multinet.kube.podnetworks import PODNETWORKS

MERGE = "application/merge-patch+json"


class FakeApiserverForTests:
    """Records every request; answers from `replies` by (method, path), or with the Status of
    `failures` (method, path) -> HTTP code, else 404 Status."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str, str, Any]] = []
        self.replies: dict[tuple[str, str], dict[str, Any]] = {}
        self.failures: dict[tuple[str, str], int] = {}

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(
            (
                request.method,
                request.path,
                request.headers.get("Content-Type", ""),
                request.headers.get("Authorization", ""),
                json.loads(body) if body else None,
            )
        )
        reply = self.replies.get((request.method, request.path))
        if reply is None:
            code = self.failures.get((request.method, request.path), 404)
            status = {"kind": "Status", "status": "Failure", "message": "refused", "code": code}
            return web.json_response(status, status=code)
        return web.json_response(reply)


@pytest.fixture
async def server() -> AsyncIterator[tuple[FakeApiserverForTests, client.ApiClient]]:
    fake = FakeApiserverForTests()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    config = client.Configuration(host=f"http://127.0.0.1:{port}")
    config.api_key = {"BearerToken": "Bearer t0ken"}
    async with client.ApiClient(config) as api:
        yield fake, api
    await runner.cleanup()


async def test_reads_a_pod_and_a_node_as_plain_json(
    server: tuple[FakeApiserverForTests, client.ApiClient],
) -> None:
    fake, core = server[0], CoreApi(server[1])
    pod = {"metadata": {"name": "p", "resourceVersion": "7", "annotations": {"a": "b"}}}
    fake.replies[("GET", "/api/v1/namespaces/ns/pods/p")] = pod
    fake.replies[("GET", "/api/v1/nodes/n1")] = {"metadata": {"name": "n1", "uid": "u-1"}}
    assert await core.read_namespaced_pod("p", "ns") == pod
    assert (await core.read_node("n1"))["metadata"]["uid"] == "u-1"
    assert [(m, p, auth) for m, p, _, auth, _ in fake.requests] == [
        ("GET", "/api/v1/namespaces/ns/pods/p", "Bearer t0ken"),
        ("GET", "/api/v1/nodes/n1", "Bearer t0ken"),
    ]


async def test_patches_a_pod_with_the_content_type_given(
    server: tuple[FakeApiserverForTests, client.ApiClient],
) -> None:
    fake, core = server[0], CoreApi(server[1])
    fake.replies[("PATCH", "/api/v1/namespaces/ns/pods/p")] = {"metadata": {"name": "p"}}
    body = {"metadata": {"resourceVersion": "7", "annotations": {"k": "v"}}}
    await core.patch_namespaced_pod("p", "ns", body, content_type=MERGE)
    assert fake.requests == [("PATCH", "/api/v1/namespaces/ns/pods/p", MERGE, "Bearer t0ken", body)]


async def test_creates_an_event(server: tuple[FakeApiserverForTests, client.ApiClient]) -> None:
    fake, core = server[0], CoreApi(server[1])
    fake.replies[("POST", "/api/v1/namespaces/default/events")] = {"kind": "Event"}
    event = {"metadata": {"generateName": "x-", "namespace": "default"}, "reason": "R"}
    await core.create_namespaced_event("default", event)
    method, path, content_type, _, sent = fake.requests[0]
    assert (method, path, content_type, sent) == (
        "POST",
        "/api/v1/namespaces/default/events",
        "application/json",
        event,
    )


async def test_an_api_error_is_translated_as_before(
    server: tuple[FakeApiserverForTests, client.ApiClient],
) -> None:
    core = CoreApi(server[1])
    with pytest.raises(NotFound), translated("read pod ns/gone"):
        await core.read_namespaced_pod("gone", "ns")


async def test_a_refused_list_is_an_error_not_an_empty_list(
    server: tuple[FakeApiserverForTests, client.ApiClient],
) -> None:
    fake, api = server
    path = "/apis/multinetwork.networking.k8s.io/v1alpha1/podnetworks"
    fake.failures[("GET", path)] = 429
    with pytest.raises(ApiError) as caught:
        await watching.list_objects(client.CustomObjectsApi(api), PODNETWORKS)
    assert caught.value.status == 429
    assert caught.value.transient  # the watch loop retries it with backoff


async def test_a_refused_watch_is_an_error_not_an_ended_watch(
    server: tuple[FakeApiserverForTests, client.ApiClient],
) -> None:
    fake, api = server
    fake.failures[("GET", "/apis/multinetwork.networking.k8s.io/v1alpha1/podnetworks")] = 403
    events = watching.watch_events(client.CustomObjectsApi(api), PODNETWORKS, "5", 30)
    with pytest.raises(ApiError) as caught:
        await anext(events)
    assert caught.value.status == 403


async def test_a_claim_that_does_not_exist_reads_as_none(
    server: tuple[FakeApiserverForTests, client.ApiClient],
) -> None:
    _, api = server
    assert await ApiLookups(api).get_claim("ns", "gone") is None
