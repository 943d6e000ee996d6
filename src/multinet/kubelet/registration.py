"""The plugin-watcher Registration service: how the kubelet discovers the DRA plugin.

The kubelet notices `<root>/plugins_registry/<driver>-reg.sock`, calls GetInfo (repeatedly:
it must stay cheap and never block), validates the answer and reports the outcome through
NotifyRegistrationStatus. Both calls are safe to run any number of times.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from grpclib.server import Stream

from multinet.kubelet._pb import pluginregistration_grpc as pb_grpc
from multinet.kubelet._pb import pluginregistration_pb2 as pb
from multinet.kubelet.grpcserver import unary

log = logging.getLogger(__name__)

PLUGIN_TYPE = "DRAPlugin"
#: The kubelet picks the first entry it knows, so v1 goes first.
SUPPORTED_VERSIONS = ("v1.DRAPlugin", "v1beta1.DRAPlugin")


@dataclass(frozen=True)
class RegistrationStatus:
    """The last NotifyRegistrationStatus from the kubelet (None before the first one)."""

    registered: bool | None = None
    error: str = ""


class RegistrationServicer(pb_grpc.RegistrationBase):
    def __init__(
        self,
        *,
        driver_name: str,
        endpoint: Path,
        supported_versions: tuple[str, ...] = SUPPORTED_VERSIONS,
    ) -> None:
        if not endpoint.is_absolute():
            raise ValueError(f"DRA endpoint must be an absolute path, got {endpoint}")
        self._info = pb.PluginInfo(
            type=PLUGIN_TYPE,
            name=driver_name,
            endpoint=str(endpoint),
            supported_versions=list(supported_versions),
        )
        self.status = RegistrationStatus()
        self._changed = asyncio.Condition()

    async def GetInfo(self, stream: Stream[pb.InfoRequest, pb.PluginInfo]) -> None:
        await unary(stream, self.info)

    async def NotifyRegistrationStatus(
        self, stream: Stream[pb.RegistrationStatus, pb.RegistrationStatusResponse]
    ) -> None:
        await unary(stream, self.notify)

    async def info(self, request: pb.InfoRequest) -> pb.PluginInfo:
        return self._info

    async def notify(self, request: pb.RegistrationStatus) -> pb.RegistrationStatusResponse:
        self.status = RegistrationStatus(request.plugin_registered, request.error)
        if request.plugin_registered:
            log.info("kubelet registered the plugin", extra={"driver": self._info.name})
        else:
            log.error(
                "kubelet rejected the plugin registration",
                extra={"driver": self._info.name, "error": request.error},
            )
        async with self._changed:
            self._changed.notify_all()
        return pb.RegistrationStatusResponse()

    async def wait_registered(self) -> RegistrationStatus:
        """Waits until the kubelet reports a successful registration (wrap in asyncio.timeout)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.status.registered is True)
        return self.status
