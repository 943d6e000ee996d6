"""``multinet controller``: wire the kube client, leader election, the watches and the queue.

Order: load credentials (``--kubeconfig`` or in-cluster), start /healthz, wait for the Lease
(unless ``--leader-elect=false``), then run the controller (watches + queue + periodic jobs) until
a signal, a lost Lease or a crash; release the Lease on the way out.
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

from kubernetes_asyncio import client

from multinet.controller import runtime
from multinet.errors import MultinetError
from multinet.kube import ipam as kube_ipam
from multinet.kube import leader
from multinet.kube.client import load_configuration
from multinet.kube.controllerapi import Kube
from multinet.probes import HealthServer

log = logging.getLogger(__name__)


async def _run(args: argparse.Namespace) -> int:
    cfg = await load_configuration(args.kubeconfig)
    identity = f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
    kube = Kube(client.ApiClient(cfg), instance=identity)
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
    kube: Kube,
    elector: leader.LeaseElector | None,
    stop: asyncio.Event,
) -> int:
    gc = runtime.Periodic(
        "ip-reservation-gc",
        args.ipam_gc_interval,
        lambda: kube_ipam.collect_orphaned_reservations(kube.api),
    )
    controller = runtime.Controller(
        kube,
        recheck_interval=args.recheck_interval,
        resync_interval=args.resync_interval,
        extra=[gc] if args.ipam_gc_interval > 0 else [],
    )
    tasks = {
        asyncio.create_task(controller.run(), name="controller"),
        asyncio.create_task(stop.wait(), name="signal"),
    }
    if elector is not None:
        tasks.add(asyncio.create_task(elector.hold(), name="lease"))
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    first = done.pop()
    code = 0 if first.get_name() == "signal" else 1
    if code:
        log.error("stopping", extra={"because": first.get_name(), "error": str(first.exception())})
    else:
        log.info("stopping on a signal")
    for task in pending:
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
