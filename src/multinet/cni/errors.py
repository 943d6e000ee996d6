"""The one error a CNI chain raises: which plugin, which command, and what it said."""

from __future__ import annotations

from multinet.errors import AttachError


class CniError(AttachError):
    """A CNI plugin could not be found, run, or understood, or it reported an error.

    An `AttachError`, so the agent's attach error handling reports it on the claim and the pod.
    `plugin` is the plugin's `type` ("" when no single plugin is to blame), `command` one of ADD,
    DEL, CHECK, `code` the CNI error code the plugin printed (None when it printed none).
    """

    def __init__(
        self, message: str, *, plugin: str = "", command: str = "", code: int | None = None
    ) -> None:
        super().__init__(message)
        self.plugin = plugin
        self.command = command
        self.code = code
