"""The checked-in CRD is exactly what the model generates, and both accept/reject the same specs.

Regenerate after changing the model:
``python -m multinet.api.crd > deploy/base/crd-podnetwork.yaml``.
"""

from __future__ import annotations

import pathlib
import re
from typing import Any

import pytest
import yaml

from multinet.api import crd, fields, names, podnetwork
from multinet.errors import ConfigError

CRD_FILE = pathlib.Path(__file__).parents[2] / "deploy" / "base" / "crd-podnetwork.yaml"


def test_checked_in_crd_is_generated_from_the_model() -> None:
    assert CRD_FILE.read_text() == crd.render(), (
        "deploy/base/crd-podnetwork.yaml is stale: "
        "run `python -m multinet.api.crd > deploy/base/crd-podnetwork.yaml`"
    )


def _version() -> dict[str, Any]:
    doc = yaml.safe_load(CRD_FILE.read_text())
    (version,) = doc["spec"]["versions"]
    assert isinstance(version, dict)
    return version


def test_fixed_names_and_shape() -> None:
    doc = yaml.safe_load(CRD_FILE.read_text())
    assert doc["metadata"]["name"] == "podnetworks.multinetwork.networking.k8s.io"
    assert doc["metadata"]["annotations"] == {
        "api-approved.kubernetes.io": "unapproved, experimental-only"
    }
    assert doc["spec"]["scope"] == "Cluster"
    assert doc["spec"]["names"]["shortNames"] == ["pnw"]
    version = _version()
    assert version["name"] == names.VERSION and version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Provider",
        "Enabled",
        "Ready",
        "Age",
    ]


def test_schema_details() -> None:
    props = _version()["schema"]["openAPIV3Schema"]["properties"]
    spec = props["spec"]
    assert spec["required"] == ["provider"]
    assert spec["properties"]["enabled"]["default"] is True
    assert spec["properties"]["parameters"]["x-kubernetes-preserve-unknown-fields"] is True
    assert spec["properties"]["provider"]["x-kubernetes-validations"] == [
        {"rule": "self == oldSelf", "message": "provider is immutable"}
    ]
    conds = props["status"]["properties"]["conditions"]
    assert conds["x-kubernetes-list-type"] == "map"
    assert conds["x-kubernetes-list-map-keys"] == ["type"]
    assert conds["maxItems"] == 8


def test_the_crd_states_the_list_bounds_of_our_parameters() -> None:
    spec = _version()["schema"]["openAPIV3Schema"]["properties"]["spec"]
    text = spec["properties"]["parameters"]["description"]
    for bound, what in [
        (fields.MAX_INTERFACE_NAMES, "interfaces.names"),
        (fields.MAX_ROUTES, "routes"),
        (fields.MAX_EXCLUDE, "ipam.exclude"),
        (fields.MAX_ADDRESSES, "addresses"),
    ]:
        assert f"{bound} {what}" in text


def test_schema_and_model_have_the_same_fields() -> None:
    props = _version()["schema"]["openAPIV3Schema"]["properties"]
    for key, model in (
        ("spec", podnetwork.PodNetworkSpec),
        ("status", podnetwork.PodNetworkStatus),
    ):
        aliases = {f.alias or n for n, f in model.model_fields.items()}
        assert set(props[key]["properties"]) == aliases


PROVIDERS = [
    ("multinet.dev", True),
    ("multinet.dev/sriov", True),
    ("example.com/a/b_c.d", True),
    ("a", True),
    ("a" * 63 + ".com", True),
    ("", False),
    ("Multinet.dev", False),
    ("multinet.dev/", False),
    ("-bad.dev", False),
    ("bad..dev", False),
    ("a" * 64 + ".com", False),
    ("multinet.dev/has space", False),
    ("multinet.dev//x", False),
    ("a." * 126 + "a", True),  # 253 characters
    ("a." * 127 + "a", False),  # 255 characters: too long
]


@pytest.mark.parametrize(("provider", "valid"), PROVIDERS)
def test_model_and_crd_pattern_agree_on_provider(provider: str, valid: bool) -> None:
    schema = _version()["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["provider"]
    by_schema = (
        bool(re.fullmatch(schema["pattern"], provider)) and len(provider) <= schema["maxLength"]
    )
    body = {"metadata": {"name": "n"}, "spec": {"provider": provider}}
    try:
        podnetwork.parse(body)
        by_model = True
    except ConfigError:
        by_model = False
    assert by_schema == by_model == valid


@pytest.mark.parametrize(
    ("provider", "ours"),
    [
        ("multinet.dev", True),
        ("multinet.dev/x", True),
        ("multinet.devx", False),
        ("x.multinet.dev", False),
        ("example.com", False),
        (None, False),
    ],
)
def test_is_ours(provider: object, ours: bool) -> None:
    assert podnetwork.is_ours(provider) is ours


def test_defaults_of_the_object_model() -> None:
    pnw = podnetwork.parse({"metadata": {"name": "n"}, "spec": {"provider": "multinet.dev"}})
    assert pnw.spec.enabled is True and pnw.spec.parameters is None
    assert pnw.status.conditions == [] and not pnw.deleting and pnw.ours
