"""Entry point 1: the cluster-wide PodNetwork controller (watches, work queue, Lease)."""
