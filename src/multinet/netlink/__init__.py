"""Netlink adapter: reads host interfaces and executes attach plans in pod network namespaces.

The only package that talks rtnetlink; callers get multinet errors, never pyroute2 ones.
"""
