"""Fixed names from the architecture: tests, manifests and both processes rely on them."""

from __future__ import annotations

from typing import Final

DRIVER: Final = "multinet.dev"
"""DRA driver name; also our provider string and the domain of our own device attributes."""

PROVIDER: Final = DRIVER

GROUP: Final = "multinetwork.networking.k8s.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "PodNetwork"
PLURAL: Final = "podnetworks"
SINGULAR: Final = "podnetwork"
SHORT_NAME: Final = "pnw"

ATTRIBUTE_DOMAIN: Final = GROUP
ATTRIBUTE_NAME: Final = "podNetwork"
ATTRIBUTE: Final = f"{ATTRIBUTE_DOMAIN}/{ATTRIBUTE_NAME}"
"""The standard device attribute naming the PodNetwork a device belongs to."""

FINALIZER: Final = f"{DRIVER}/in-use"
"""Held on our PodNetworks while ResourceClaims still hold devices of the network."""

CLAIM_DATA_KEY: Final = "podNetwork"
"""Key in ResourceClaim ``status.devices[].data`` naming the PodNetwork."""

RESOURCE_API: Final = "resource.k8s.io/v1"

# The IPReservation objects of pool IPAM live in the driver's own group, not in the PodNetwork API.
IPRESERVATION_GROUP: Final = DRIVER
IPRESERVATION_VERSION: Final = "v1alpha1"
IPRESERVATION_API_VERSION: Final = f"{IPRESERVATION_GROUP}/{IPRESERVATION_VERSION}"
IPRESERVATION_KIND: Final = "IPReservation"
IPRESERVATION_PLURAL: Final = "ipreservations"
IPRESERVATION_SINGULAR: Final = "ipreservation"
IPRESERVATION_SHORT_NAME: Final = "mnip"
