"""Flags are declared once (`multinet.settings`): the parsers, `--help` and README follow it."""

from __future__ import annotations

import re

import pytest
from manifests import REPO

from multinet import settings
from multinet.cli import build_parser
from multinet.settings import AGENT, COMMON, CONTROLLER, PROGRAMS, Flag


def readme_flags_section() -> str:
    readme = (REPO / "README.md").read_text()
    match = re.search(r"^### Flags\n\n(.*?)\n(?=^##)", readme, re.M | re.S)
    assert match, 'README.md has no "### Flags" section followed by another heading'
    return match.group(1)


def help_of(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    # argparse wraps lines anywhere between words; compare with single spaces.
    return " ".join(capsys.readouterr().out.split())


def test_the_readme_flag_list_is_rendered_from_the_declaration() -> None:
    assert readme_flags_section() == settings.render_markdown(), (
        "README.md's ### Flags section is stale: replace it with `python -m multinet.settings`"
    )


@pytest.mark.parametrize("command", sorted(PROGRAMS))
def test_help_shows_each_flag_with_its_env_var_and_default(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    shown = help_of(command, capsys)
    for flag in PROGRAMS[command]:
        assert f"--{flag.name}" in shown
        default = flag.documented_default() or "empty"
        assert f"[env {flag.env}, default {default}]" in shown, flag.name


def test_names_and_env_vars_are_unique_per_program() -> None:
    for flags in PROGRAMS.values():
        assert len({f.name for f in flags}) == len(flags)
        assert len({f.env for f in flags}) == len(flags)
    assert set(COMMON + CONTROLLER + AGENT) == {f for fs in PROGRAMS.values() for f in fs}


@pytest.mark.parametrize("command", sorted(PROGRAMS))
def test_defaults_come_from_the_declaration_then_the_env(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for flag in PROGRAMS[command]:
        monkeypatch.delenv(flag.env, raising=False)
    parsed = vars(build_parser().parse_args([command]))
    for flag in PROGRAMS[command]:
        assert parsed[flag.dest] == flag.value(), flag.name
        assert isinstance(parsed[flag.dest], type(flag.type(flag.documented_default() or "0")))


def test_an_env_var_overrides_the_default_and_a_flag_overrides_the_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MULTINET_METRICS_PORT", "9999")
    monkeypatch.setenv("NODE_NAME", "from-env")
    assert build_parser().parse_args(["node-agent"]).metrics_port == 9999
    assert build_parser().parse_args(["node-agent"]).node_name == "from-env"
    args = build_parser().parse_args(["node-agent", "--metrics-port", "1", "--node-name", "n"])
    assert (args.metrics_port, args.node_name) == (1, "n")


def test_a_run_time_default_needs_words_for_the_docs() -> None:
    flag = Flag("x", "X", lambda: "computed", "a flag")
    with pytest.raises(ValueError, match="default_doc"):
        flag.documented_default()
