"""Netlink adapter: reads host interfaces and executes attach plans in pod network namespaces.

The only package that talks rtnetlink; callers get multinet errors, never pyroute2 ones.

Two encoders, on purpose (commit "hand-packed rtnetlink messages on the attach path"):

- The attach path (`attach`, `restore`, `hoststate`, over `rtnl` and `codec`) packs and parses
  its few messages by hand with `struct`. It runs under the runtime's ~2 s NRI deadline, and
  pyroute2's message classes cost ~0.17 ms to encode and ~0.5 ms to decode a link message here
  (its sync `IPRoute` ~1 ms of Python per request): several milliseconds per attach, as much as
  the kernel's own work. `struct` does the same in microseconds.
- The inventory (`inventory` for the sockets and the thread, `kernelview` for message -> state)
  decodes link and address notifications with pyroute2's marshal: it runs on its own thread,
  off every deadline, so the decoding cost is paid where nobody waits, and the nested link
  attributes it reads (IFLA_LINKINFO kind, permanent MAC, operstate, ...) need no decoder of
  ours. Route and nexthop messages are decoded by hand there too, only because pyroute2 has no
  nexthop class and drops RTA_NH_ID.

Modules: `rtnl` (blocking client), `codec` (message bodies), `netns` (namespaces, the one setns),
`attach`/`restore` (moves and their undo), `hoststate` (reading what restore puts back), `steps`
(pure diffs), `executor` (the asyncio face: worker threads), `inventory`/`kernelview`, `sysfs`,
`sysctls` (a pod namespace's /proc/sys/net, from a thread that setns'd into it).
"""
