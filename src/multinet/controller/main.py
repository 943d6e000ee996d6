"""Controller entry point."""

from __future__ import annotations

import argparse
import sys


def run_controller(args: argparse.Namespace) -> int:
    print("multinet controller: not implemented yet", file=sys.stderr)
    return 2
