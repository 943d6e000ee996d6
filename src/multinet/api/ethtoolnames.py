"""What an ethtool feature name may look like, checked without asking a kernel.

Whether a name exists is for the node's kernel to say (`multinet.netlink.ethtool` asks it); the
configuration model can only reject what no kernel would ever print. The kernel's names (string
set ETH_SS_FEATURES: tx-checksum-ip-generic, rx-gro, ...) and ethtool(8)'s legacy names
(tx-checksumming, tso, ...) are lowercase letters, digits and '-', and a few kernel names have an
'_' (tx-udp_tnl-segmentation, rx-udp_tunnel-port-offload), so '_' is allowed too. A leading '-'
is not: no name has one, and ethtool(8) would read it as an option. No I/O here.
"""

from __future__ import annotations

import re

#: Generous: the kernel's names fit ETH_GSTRING_LEN (32 bytes with the NUL).
NAME_MAX = 64

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


def check_feature_name(name: object) -> str | None:
    """Why `name` cannot be an ethtool feature name, else None."""
    if not isinstance(name, str) or not name:
        return "must be a non-empty string"
    if len(name) > NAME_MAX:
        return f"must be at most {NAME_MAX} characters, got {len(name)}"
    if not _NAME.fullmatch(name):
        return (
            "must be lowercase letters, digits, '-' and '_', not starting with '-' "
            "(a name as `ethtool -k` prints it, like tx-checksumming)"
        )
    return None
