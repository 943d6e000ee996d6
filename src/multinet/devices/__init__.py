"""Host interfaces as DRA devices: pure data and decisions, no I/O.

The netlink adapter reads the kernel into a ``model.HostSnapshot``; everything after that is
decided here and is unit-tested without a kernel:

- ``model``       facts about links (``Link``, ``Hardware``, ``HostSnapshot``) and the ``Device``
                  we publish (name, attributes, capacity, shareable)
- ``naming``      stable DNS-label device names (why they survive restarts and pod round trips)
- ``attributes``  the ``multinet.dev/...`` and ``resource.kubernetes.io/...`` attributes of a link
- ``exclusion``   interfaces never advertised (loopback, the default route and the devices
                  beneath it, pod veths, CNI bridges, known overlay/CNI devices)
- ``binding``     which Ready PodNetwork selects which device; conflicts as data
- ``slots``       a shared (macvlan) parent as N once-allocatable slot devices, where the cluster
                  does not serve consumable capacity
- ``resolve``     snapshot + networks -> devices to publish (the one call the agent makes)
- ``away``        devices moved into pods stay published with their last host facts
"""
