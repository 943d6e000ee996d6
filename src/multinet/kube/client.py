"""The one client factory for both programs: credentials from a kubeconfig file, or the pod's
service account when the path is empty. Only ``kubernetes_asyncio`` is used by the product (the
synchronous ``kubernetes`` package is a test and benchmark dependency)."""

from __future__ import annotations

import os

from kubernetes_asyncio import client, config
from kubernetes_asyncio.config.config_exception import ConfigException

from multinet.errors import ConfigError


async def load_configuration(kubeconfig: str) -> client.Configuration:
    """From ``kubeconfig``, or the pod's service account when empty; ConfigError if unusable."""
    cfg = client.Configuration()
    if kubeconfig and not os.path.isfile(kubeconfig):  # noqa: ASYNC240 (once, at start-up)
        raise ConfigError([f"--kubeconfig: {kubeconfig} does not exist"])
    try:
        if kubeconfig:
            await config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
        else:
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    except ConfigException as exc:
        where = f"--kubeconfig: {kubeconfig}" if kubeconfig else "in-cluster config"
        raise ConfigError([f"{where}: {exc}"]) from exc
    return cfg


async def api_client(kubeconfig: str) -> client.ApiClient:
    """An ApiClient for ``kubeconfig``; an empty path means in-cluster configuration."""
    return client.ApiClient(configuration=await load_configuration(kubeconfig))
