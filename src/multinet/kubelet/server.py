"""Serves the kubelet plugin: the Registration socket and the DRA socket (grpcio aio).

Sockets (docs/architecture.md, protocols 1): `<kubelet root>/plugins_registry/<driver>-reg.sock`
and `<kubelet root>/plugins/<driver>/dra.sock`. A stale socket from a previous run is removed before
listening (grpc cannot bind over it); both are unlinked on shutdown. The DRA server starts
before the registration socket appears, so the kubelet never registers an endpoint that does
not answer, and the registration socket goes first on shutdown, which deregisters the plugin.
"""

from __future__ import annotations

import logging
import stat
from collections.abc import Callable
from pathlib import Path

import grpc

from multinet import DRIVER_NAME
from multinet.kubelet._pb import dra_health_v1alpha1_pb2_grpc as health_grpc
from multinet.kubelet._pb import dra_v1_pb2_grpc, dra_v1beta1_pb2_grpc
from multinet.kubelet._pb import pluginregistration_pb2_grpc as reg_grpc
from multinet.kubelet.device_health import HEALTH_SERVICE, DeviceHealthServicer
from multinet.kubelet.dra import (
    DRAPluginV1Beta1Servicer,
    DRAPluginV1Servicer,
    DRAService,
    Preparer,
)
from multinet.kubelet.registration import SUPPORTED_VERSIONS, RegistrationServicer

log = logging.getLogger(__name__)


def registration_socket(kubelet_root: Path, driver_name: str = DRIVER_NAME) -> Path:
    return kubelet_root / "plugins_registry" / f"{driver_name}-reg.sock"


def dra_socket(kubelet_root: Path, driver_name: str = DRIVER_NAME) -> Path:
    return kubelet_root / "plugins" / driver_name / "dra.sock"


def _remove_stale(path: Path) -> None:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise FileExistsError(f"{path} exists and is not a socket; refusing to replace it")
    log.info("removing stale socket", extra={"path": str(path)})
    path.unlink(missing_ok=True)


class KubeletPlugin:
    """Both gRPC servers: `start()`, `stop()`; `registration.status` is the kubelet's verdict."""

    def __init__(
        self,
        *,
        preparer: Preparer,
        kubelet_root: Path,
        driver_name: str = DRIVER_NAME,
        health: DeviceHealthServicer | None = None,
    ) -> None:
        root = kubelet_root.absolute()
        self.registration_socket = registration_socket(root, driver_name)
        self.dra_socket = dra_socket(root, driver_name)
        self.service = DRAService(preparer)
        self.health = health
        # List the health service only when served; the DRAPlugin versions stay first because
        # the kubelet takes the first entry it knows as the prepare/unprepare service.
        versions = SUPPORTED_VERSIONS + ((HEALTH_SERVICE,) if health is not None else ())
        self.registration = RegistrationServicer(
            driver_name=driver_name, endpoint=self.dra_socket, supported_versions=versions
        )
        self._dra_server: grpc.aio.Server | None = None
        self._reg_server: grpc.aio.Server | None = None

    async def start(self) -> None:
        try:
            self._dra_server = await self._serve(self.dra_socket, self._add_dra)
            self._reg_server = await self._serve(self.registration_socket, self._add_registration)
        except BaseException:
            await self.stop(0)
            raise
        log.info(
            "kubelet plugin listening",
            extra={"registration": str(self.registration_socket), "dra": str(self.dra_socket)},
        )

    async def stop(self, grace: float = 2.0) -> None:
        """Idempotent. In-flight calls get `grace` seconds to finish."""
        if self.health is not None:  # health streams end with OK, not with a cancel
            await self.health.close()
        for server, path in (
            (self._reg_server, self.registration_socket),
            (self._dra_server, self.dra_socket),
        ):
            if server is not None:  # only a socket we listened on is ours to remove
                await server.stop(grace)
                path.unlink(missing_ok=True)
        self._reg_server = self._dra_server = None

    # The generated registration helpers carry no annotations (no mypy plugin for grpc stubs).
    def _add_dra(self, server: grpc.aio.Server) -> None:
        add_v1 = dra_v1_pb2_grpc.add_DRAPluginServicer_to_server
        add_v1beta1 = dra_v1beta1_pb2_grpc.add_DRAPluginServicer_to_server
        add_v1(DRAPluginV1Servicer(self.service), server)  # type: ignore[no-untyped-call]
        add_v1beta1(DRAPluginV1Beta1Servicer(self.service), server)  # type: ignore[no-untyped-call]
        if self.health is not None:
            add_health = health_grpc.add_DRAResourceHealthServicer_to_server
            add_health(self.health, server)  # type: ignore[no-untyped-call]

    def _add_registration(self, server: grpc.aio.Server) -> None:
        add = reg_grpc.add_RegistrationServicer_to_server
        add(self.registration, server)  # type: ignore[no-untyped-call]

    @staticmethod
    async def _serve(path: Path, add: Callable[[grpc.aio.Server], None]) -> grpc.aio.Server:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(path)
        server = grpc.aio.server()
        add(server)
        if server.add_insecure_port(f"unix://{path}") == 0:
            raise OSError(f"cannot listen on {path}")
        await server.start()
        return server
