"""``multinet controller``: wire the kube client, leader election, kopf and the reconcile queue.

Order: load credentials (``--kubeconfig`` or in-cluster), start /healthz, wait for the Lease
(unless ``--leader-elect=false``), then run kopf (watches) and the controller (queue + periodic
jobs) together until a signal, a lost Lease or a crash of either; release the Lease on the way out.
Exit codes: 0 after a signal, 1 when leadership was lost or a component failed (so the Deployment
restarts the process as a fresh candidate).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import uuid

import kopf
from kubernetes_asyncio import client

from multinet.controller import handlers, kubeapi, leader
from multinet.errors import MultinetError
from multinet.kube import ipam as kube_ipam
from multinet.probes import HealthServer

log = logging.getLogger(__name__)


async def connection_info(kubeconfig: str) -> kopf.ConnectionInfo:
    """kopf credentials from the same source as our own client (re-read on every login)."""
    cfg = await kubeapi.load_configuration(kubeconfig)
    token = None
    if "BearerToken" in cfg.api_key:
        value = await cfg.get_api_key_with_prefix("BearerToken")
        token = value.split(" ", 1)[1] if value.lower().startswith("bearer ") else value
    return kopf.ConnectionInfo(
        server=cfg.host or "",
        ca_path=cfg.ssl_ca_cert or None,
        insecure=not cfg.verify_ssl,
        scheme="Bearer" if token else None,
        token=token,
        certificate_path=cfg.cert_file or None,
        private_key_path=cfg.key_file or None,
        default_namespace=kubeapi.EVENTS_NAMESPACE,
    )


def kopf_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.posting.enabled = False  # we post our own Events, only for transitions
    settings.scanning.disabled = True  # no list/watch on CRDs and namespaces (least privilege)
    settings.watching.server_timeout = 300  # re-list now and then, as a safety net
    return settings


async def _run(args: argparse.Namespace) -> int:
    cfg = await kubeapi.load_configuration(args.kubeconfig)
    identity = f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
    kube = kubeapi.Kube(client.ApiClient(cfg), instance=identity)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = HealthServer("0.0.0.0", args.health_port)
    await server.start()
    elector = None
    if args.leader_elect == "true":
        elector = leader.LeaseElector(kube, args.namespace, args.lease_name, identity)
    try:
        if elector is not None:
            acquiring = asyncio.create_task(elector.acquire())
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({acquiring, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not acquiring.done():
                acquiring.cancel()
                return 0
        return await _lead(args, kube, elector, stop)
    finally:
        if elector is not None:
            await elector.release()
        await server.stop()
        await kube.close()


async def _lead(
    args: argparse.Namespace,
    kube: kubeapi.Kube,
    elector: leader.LeaseElector | None,
    stop: asyncio.Event,
) -> int:
    registry = kopf.OperatorRegistry()
    gc = handlers.Periodic(
        "ip-reservation-gc",
        args.ipam_gc_interval,
        lambda: kube_ipam.collect_orphaned_reservations(kube.api),
    )
    controller = handlers.Controller(
        kube,
        recheck_interval=args.recheck_interval,
        resync_interval=args.resync_interval,
        extra=[gc] if args.ipam_gc_interval > 0 else [],
    )
    handlers.register(registry, controller, lambda: connection_info(args.kubeconfig))
    kopf_stop = asyncio.Event()
    tasks = {
        asyncio.create_task(
            kopf.operator(
                registry=registry,
                settings=kopf_settings(),
                clusterwide=True,
                standalone=True,
                stop_flag=kopf_stop,
            ),
            name="kopf",
        ),
        asyncio.create_task(controller.run(), name="controller"),
        asyncio.create_task(stop.wait(), name="signal"),
    }
    if elector is not None:
        tasks.add(asyncio.create_task(elector.hold(), name="lease"))
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    first = done.pop()
    # kopf ends cleanly on SIGINT/SIGTERM (it takes over the signal handlers once it runs).
    code = 0 if first.get_name() in ("signal", "kopf") and not first.exception() else 1
    if code:
        log.error("stopping", extra={"because": first.get_name(), "error": str(first.exception())})
    else:
        log.info("stopping on a signal")
    kopf_stop.set()
    for task in pending:
        if task.get_name() != "kopf":
            task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), timeout=10)
    return code


def run_controller(args: argparse.Namespace) -> int:
    log.info("starting multinet controller", extra={"pid": os.getpid()})
    try:
        return asyncio.run(_run(args))
    except MultinetError as exc:
        log.error("cannot run the controller: %s", exc)
        return 1
