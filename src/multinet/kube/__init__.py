"""Adapters to the Kubernetes API: the one place that talks to the apiserver; errors mapped here."""
