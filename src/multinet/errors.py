"""The exception tree: one type per failure a user can act on.

    MultinetError
    ├── ConfigError      invalid PodNetwork parameters or claim config (retrying won't help)
    ├── ClaimError       a claim that cannot be prepared as it is (not allocated, UID changed, ...)
    ├── AllocationError  IPAM could not hand out an address (pool exhausted, static address taken)
    ├── AttachError      netlink work in the pod's netns failed (the interface is back on the host)
    ├── RestoreError     giving an interface back to the host failed (logged and counted)
    ├── CheckpointError  the state file could not be read or written
    └── ProtocolError    a peer (kubelet, containerd) spoke something we cannot parse

Foreign errors (ApiException, NetlinkError, grpc errors) are mapped once, at the adapter boundary.
"""


class MultinetError(Exception):
    """Base of every error multinet raises on purpose."""


class ConfigError(MultinetError):
    """A configuration document is invalid. `errors` holds every problem as "field.path: rule"."""

    def __init__(self, errors: list[str], *, subject: str = "") -> None:
        self.errors = list(errors)
        self.subject = subject
        prefix = f"{subject}: " if subject else ""
        super().__init__(prefix + "; ".join(self.errors))


class ClaimError(MultinetError):
    """A ResourceClaim cannot be prepared as it stands."""


class AllocationError(MultinetError):
    """No address could be reserved for a claim."""


class AttachError(MultinetError):
    """Configuring an interface inside a pod failed; the interface was given back to the host."""


class RestoreError(MultinetError):
    """Returning an interface to the host failed."""


class CheckpointError(MultinetError):
    """The agent's state file is unreadable or could not be written."""


class ProtocolError(MultinetError):
    """A peer sent bytes we cannot decode."""
