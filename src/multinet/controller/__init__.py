"""Entry point 1: the cluster-wide PodNetwork controller (kopf)."""
