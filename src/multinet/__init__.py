"""multinet: multi-network for Kubernetes through Dynamic Resource Allocation."""

__version__ = "0.1.0"

#: The DRA driver name, the provider string, the attribute domain and the finalizer prefix.
DRIVER_NAME = "multinet.dev"
