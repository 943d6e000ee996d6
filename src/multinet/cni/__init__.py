"""CNI chains for `mode: cni` networks: run a plugin chain as a container runtime would.

A PodNetwork of that mode carries a CNI network config or conflist (exactly what a Multus
NetworkAttachmentDefinition's `spec.config` holds). This package runs it for one attachment,
following the CNI spec (results of 0.3.x/0.4.0 and 1.x):

- `config` (pure): parse and validate a config into a `Chain`.
- `invocation` (pure): what one plugin execution gets: its stdin (with the claim's device filled
  in, `runtimeConfig` per declared capability, `prevResult`) and its environment.
- `result` (pure): a chain's result as the `Outcome` the claim status reports.
- `cache` (I/O): one file per attachment holding everything a DEL needs, written atomically.
- `runner` (I/O): `add`, `delete`, `check` run the plugin executables.
- `errors`: `CniError`, an `AttachError`, so the agent reports it like any failed attach.
"""
