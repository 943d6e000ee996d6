"""Serves the kubelet plugin: the Registration socket and the DRA socket (grpclib, asyncio).

Sockets (docs/architecture.md, protocols 1): `<kubelet root>/plugins_registry/<driver>-reg.sock`
and `<kubelet root>/plugins/<driver>/dra.sock`. A stale socket from a previous run is removed before
listening; both are unlinked on shutdown (`grpcserver.UnixServer.stop`). The DRA server starts
before the registration socket appears, so the kubelet never registers an endpoint that does
not answer, and the registration socket goes first on shutdown, which deregisters the plugin.
"""

from __future__ import annotations

import logging
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from multinet import DRIVER_NAME
from multinet.kubelet.device_health import HEALTH_SERVICE, DeviceHealthServicer
from multinet.kubelet.dra import (
    DRAPluginV1Beta1Servicer,
    DRAPluginV1Servicer,
    DRAService,
    Preparer,
)
from multinet.kubelet.grpcserver import UnixServer
from multinet.kubelet.registration import SUPPORTED_VERSIONS, RegistrationServicer

if TYPE_CHECKING:
    from grpclib._typing import IServable

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
        self._dra_server: UnixServer | None = None
        self._reg_server: UnixServer | None = None

    async def start(self) -> None:
        dra: list[IServable] = [
            DRAPluginV1Servicer(self.service),
            DRAPluginV1Beta1Servicer(self.service),
        ]
        if self.health is not None:
            dra.append(self.health)
        try:
            self._dra_server = await self._serve(self.dra_socket, dra)
            self._reg_server = await self._serve(self.registration_socket, [self.registration])
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
        for server in (self._reg_server, self._dra_server):
            if server is not None:  # only a socket we listened on is ours to remove
                await server.stop(grace)
        self._reg_server = self._dra_server = None

    @staticmethod
    async def _serve(path: Path, servables: list[IServable]) -> UnixServer:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(path)
        server = UnixServer(servables)
        await server.serve(path)
        return server
