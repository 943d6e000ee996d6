"""NRI plugin for containerd in pure asyncio: the node agent's hook into pod sandbox start/stop.

Public API (everything else in this package is internal):
    NRIPlugin(handler, PluginSettings(...)); await plugin.run(); plugin.connected
    PodHandler   the Protocol the agent implements (on_synchronize, on_run/stop/remove_pod_sandbox)
    PodSandbox   the plain dataclass handed to the handler
    answered()   in a handler: an awaitable done once the runtime has the answer (work after it)

Layers, outermost first: `mux` (frames over the unix socket), `ttrpc` (RPC), `plugin` (NRI
registration, sessions, reconnection), `dispatch` (deadline guard, per-pod ordering), `pods`.
"""

from multinet.nri.dispatch import PodEvent, PodHandler
from multinet.nri.plugin import NRIPlugin, PluginSettings
from multinet.nri.pods import PodSandbox
from multinet.nri.ttrpc import answered

__all__ = ["NRIPlugin", "PluginSettings", "PodEvent", "PodHandler", "PodSandbox", "answered"]
