"""/healthz, /readyz and /metrics for both programs (aiohttp, on the program's event loop).

- /healthz: the process and its event loop answer (liveness: restart it if not). The
  controller answers on standbys too: waiting for the Lease is healthy.
- /readyz: every registered check passes (the agent: kubelet plugin registered, NRI connected,
  first slice published); the body names the ones that do not.
- /metrics: Prometheus text format of the default registry.
"""

from __future__ import annotations

from collections.abc import Callable

import prometheus_client
from aiohttp import web

ReadinessCheck = Callable[[], bool]


class HealthServer:
    def __init__(self, address: str, port: int) -> None:
        self._address = address
        self._port = port
        self._checks: dict[str, ReadinessCheck] = {}
        self._runner: web.AppRunner | None = None

    def add_readiness_check(self, name: str, check: ReadinessCheck) -> None:
        self._checks[name] = check

    def not_ready(self) -> list[str]:
        return sorted(name for name, check in self._checks.items() if not check())

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, _: web.Request) -> web.Response:
        missing = self.not_ready()
        if missing:
            return web.Response(status=503, text="not ready: " + ", ".join(missing) + "\n")
        return web.Response(text="ok\n")

    async def _metrics(self, _: web.Request) -> web.Response:
        body = prometheus_client.generate_latest(prometheus_client.REGISTRY)
        return web.Response(
            body=body, headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST}
        )

    async def start(self) -> None:
        if self._port == 0:
            return
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._address, self._port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
