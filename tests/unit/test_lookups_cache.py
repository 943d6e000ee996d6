"""ApiLookups reads a PodNetwork from the agent's watch when the watch holds it, with the same
checks as a read from the API; only a network the watch has not seen costs an API call.

The API client points at a port nothing listens on: a read that reached it would fail."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from kubernetes_asyncio import client

from multinet.errors import ClaimError, ConfigError
from multinet.kube.lookups import ApiLookups


def _network(**spec: Any) -> dict[str, Any]:
    body = {"provider": "multinet.dev", "parameters": {"interfaces": {"names": ["eth9"]}}}
    return {"metadata": {"name": "storage"}, "spec": {**body, **spec}}


@pytest.fixture
async def api() -> AsyncIterator[client.ApiClient]:
    config = client.Configuration(host="http://127.0.0.1:9")  # discard port: refused
    async with client.ApiClient(config) as api:
        yield api


async def test_a_watched_network_is_read_without_an_api_call(api: client.ApiClient) -> None:
    parameters = {"interfaces": {"names": ["eth9"]}, "interfaceName": "san0"}
    seen: dict[str, Mapping[str, Any]] = {"storage": _network(parameters=parameters)}
    params = await ApiLookups(api, cached=seen.get).get_network_parameters("storage")
    assert params.interface_name == "san0"


async def test_a_watched_network_gets_the_same_checks(api: client.ApiClient) -> None:
    seen: dict[str, Mapping[str, Any]] = {
        "off": _network(enabled=False),
        "foreign": _network(provider="example.com/other"),
        "bad": _network(parameters={"interfaces": {"names": []}, "mtu": 12}),
    }
    lookups = ApiLookups(api, cached=seen.get)
    with pytest.raises(ClaimError, match=r"PodNetwork off is disabled \(spec.enabled: false\)"):
        await lookups.get_network_parameters("off")
    with pytest.raises(ClaimError, match=r"provider 'example\.com/other' is not ours"):
        await lookups.get_network_parameters("foreign")
    with pytest.raises(ConfigError, match="PodNetwork bad parameters"):
        await lookups.get_network_parameters("bad")


async def test_a_network_the_watch_has_not_seen_is_read_from_the_api(
    api: client.ApiClient,
) -> None:
    seen: dict[str, Mapping[str, Any]] = {"storage": _network()}
    with pytest.raises(ClaimError, match="PodNetwork other: cannot read it from the API"):
        await ApiLookups(api, cached=seen.get).get_network_parameters("other")
