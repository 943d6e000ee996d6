"""multinet: multi-network for Kubernetes through Dynamic Resource Allocation."""

from multinet.api.names import DRIVER

__version__ = "0.1.0"

#: The DRA driver name, the provider string, the attribute domain and the finalizer prefix
#: (defined in ``multinet.api.names``, re-exported under this older name).
DRIVER_NAME = DRIVER
