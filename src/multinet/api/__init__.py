"""The PodNetwork API and the configuration documents multinet reads: pure data, no I/O.

Modules, each imported whole and used qualified (``parameters.parse(...)``):

- ``names``       fixed names: driver, CRD group/version/kind, attribute, finalizer
- ``problems``    turns pydantic errors into "field.path: rule" messages (one place)
- ``fields``      reusable validated field types (ifname, CIDR, address, MAC, MTU)
- ``parameters``  ``spec.parameters`` of provider ``multinet.dev``
- ``podnetwork``  the PodNetwork object, ``is_ours(provider)``
- ``conditions``  set/merge status conditions without disturbing others
- ``claimconfig`` the opaque claim/class config and the effective-config merge
- ``crd``         the CustomResourceDefinition generated from ``podnetwork``
- ``allocation``  what NodePrepareResources reads from an allocated ResourceClaim
- ``ipreservation`` the IPReservation object of pool IPAM (its CRD is tested against it)
"""
