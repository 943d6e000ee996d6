"""Node agent entry point: wires the adapters together in one asyncio loop."""

from __future__ import annotations

import argparse
import sys


def run_agent(args: argparse.Namespace) -> int:
    print("multinet node-agent: not implemented yet", file=sys.stderr)
    return 2
