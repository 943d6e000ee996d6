"""The asyncio API client, from a kubeconfig file or the pod's in-cluster service account."""

from __future__ import annotations

from kubernetes_asyncio import client, config


async def api_client(kubeconfig: str) -> client.ApiClient:
    """An ApiClient for ``kubeconfig``; an empty path means in-cluster configuration."""
    configuration = client.Configuration()
    if kubeconfig:
        await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    else:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return client.ApiClient(configuration=configuration)
