"""Adapter: the few core/v1 calls multinet makes (Events, a Pod's read and patch, a Node's read),
through the client's generic ``ApiClient.call_api`` with plain JSON in and out.

Why not the generated ``CoreV1Api``: its module holds every core endpoint, and a typed read
brings in the model classes of the whole object (``V1Pod`` and all it nests): together about
4 MB of every agent's and the controller's memory (``bench/agent_memory.py``), for four calls.
``call_api`` is the same entry point the generated methods end in (authentication, retries of
the connection, errors as ``ApiException``), so nothing about the request is written here.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes_asyncio import client

from multinet.kube.errors import read_body

_JSON = "application/json"
_AUTH = ["BearerToken"]


class CoreApi:
    def __init__(self, api: client.ApiClient) -> None:
        self._api = api

    async def _call(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        *,
        body: Any = None,
        content_type: str = _JSON,
    ) -> dict[str, Any]:
        headers = {"Accept": _JSON}
        if body is not None:
            headers["Content-Type"] = content_type
        response: Any = await self._api.call_api(
            path,
            method,
            path_params=params,
            header_params=headers,
            body=body,
            auth_settings=_AUTH,
            _preload_content=False,
        )
        raw = await read_body(response)
        doc = json.loads(raw) if raw else {}
        return doc if isinstance(doc, dict) else {}

    async def create_namespaced_event(self, namespace: str, body: dict[str, Any]) -> None:
        await self._call(
            "POST", "/api/v1/namespaces/{namespace}/events", {"namespace": namespace}, body=body
        )

    async def read_namespaced_pod(self, name: str, namespace: str) -> dict[str, Any]:
        return await self._call(
            "GET",
            "/api/v1/namespaces/{namespace}/pods/{name}",
            {"namespace": namespace, "name": name},
        )

    async def patch_namespaced_pod(
        self, name: str, namespace: str, body: dict[str, Any], *, content_type: str
    ) -> None:
        await self._call(
            "PATCH",
            "/api/v1/namespaces/{namespace}/pods/{name}",
            {"namespace": namespace, "name": name},
            body=body,
            content_type=content_type,
        )

    async def read_node(self, name: str) -> dict[str, Any]:
        return await self._call("GET", "/api/v1/nodes/{name}", {"name": name})
