"""Controller settings: flags and their environment variables."""

from __future__ import annotations

import argparse
import os


def add_controller_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--health-port",
        type=int,
        default=int(os.environ.get("MULTINET_HEALTH_PORT", "8080")),
        help="port of the liveness endpoint /healthz; 0 disables [env MULTINET_HEALTH_PORT, default 8080]",
    )
