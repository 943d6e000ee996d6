"""multinet: multi-network for Kubernetes through Dynamic Resource Allocation."""

from multinet import lazyimports
from multinet.api.names import DRIVER

# Before any multinet module imports kubernetes_asyncio or pyroute2: their package initialisers
# import ~960 modules (40 MB RSS) of which we use a handful; see multinet/lazyimports.py.
lazyimports.install()

__version__ = "0.1.0"

#: The DRA driver name, the provider string, the attribute domain and the finalizer prefix
#: (defined in ``multinet.api.names``, re-exported under this older name).
DRIVER_NAME = DRIVER
