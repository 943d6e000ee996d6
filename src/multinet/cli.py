"""The `multinet` command: `controller`, `node-agent`, `convert-nad`, `version`.

Every flag has an environment variable (shown in --help) so manifests can configure the
processes without rewriting their command lines; the flags are declared in `multinet.settings`.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from multinet import __version__
from multinet.logs import setup_logging
from multinet.settings import PROGRAMS, add_flags


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multinet",
        description="Multi-network for Kubernetes through Dynamic Resource Allocation.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    controller = sub.add_parser(
        "controller",
        help="reconcile PodNetworks: conditions, DeviceClasses, finalizers, IP reservations",
        description="Run the cluster-wide controller. Watches PodNetworks of provider "
        "multinet.dev, keeps their Ready condition, a DeviceClass per network and the in-use "
        "finalizer, and garbage-collects IP reservations of claims that no longer exist.",
    )
    add_flags(controller, PROGRAMS["controller"])

    agent = sub.add_parser(
        "node-agent",
        help="advertise this node's interfaces and attach them to pods (DRA + NRI)",
        description="Run the per-node agent: publishes ResourceSlices, serves the kubelet DRA "
        "plugin and the containerd NRI plugin that moves interfaces into pods.",
    )
    add_flags(agent, PROGRAMS["node-agent"])

    convert_nad = sub.add_parser(
        "convert-nad",
        help="migrate from Multus: NetworkAttachmentDefinitions -> PodNetworks and claims",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Its help text lives with the converter, whose import (multinet's models, yaml) neither
    # program needs: read when `convert-nad --help` is asked for, not every time the CLI starts.
    convert_nad.format_help = functools.partial(_convert_help, convert_nad)  # type: ignore[method-assign]
    convert_nad.add_argument(
        "file", metavar="FILE|-", help="YAML or JSON documents to convert; - reads stdin"
    )

    sub.add_parser("version", help="print the version and exit")
    return parser


def _convert_help(parser: argparse.ArgumentParser) -> str:
    from multinet import convert

    parser.description, parser.epilog = convert.HELP_DESCRIPTION, convert.HELP_EPILOG
    return argparse.ArgumentParser.format_help(parser)


def convert_nad(path: str) -> int:
    """`multinet convert-nad FILE|-`: the I/O around `multinet.convert`."""
    from multinet import convert

    prog = "multinet convert-nad"
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"{prog}: error: cannot read {path}: {exc}", file=sys.stderr)
        return 1
    try:
        result = convert.convert(text, source="stdin" if path == "-" else path)
    except convert.ConvertError as exc:
        for error in exc.errors:
            print(f"{prog}: error: {error}", file=sys.stderr)
        return 1
    for warning in result.warnings:
        print(f"{prog}: warning: {warning}", file=sys.stderr)
    for note in result.notes:
        print(f"{prog}: note: {note}", file=sys.stderr)
    sys.stdout.write(convert.render(result))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "version":
        print(f"multinet {__version__}")
        return 0
    if args.command == "convert-nad":
        return convert_nad(args.file)
    setup_logging(level=args.log_level, fmt=args.log_format)
    log = logging.getLogger("multinet")
    try:
        if args.command == "controller":
            from multinet.controller.main import run_controller

            return run_controller(args)
        from multinet.agent.main import run_agent

        return run_agent(args)
    except KeyboardInterrupt:
        log.info("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
