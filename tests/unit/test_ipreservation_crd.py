"""The hand-written IPReservation CRD and the model in multinet.api.ipreservation agree.

The YAML stays hand-written (comments, printer columns, selectable fields); this test is what
keeps its schema and names equal to the model and to multinet.api.names.
"""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from multinet.api import crd, ipreservation, names

CRD_FILE = pathlib.Path(__file__).parents[2] / "deploy" / "base" / "crd-ipreservation.yaml"


def _doc() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(CRD_FILE.read_text())
    return doc


def test_spec_schema_is_the_models() -> None:
    (version,) = _doc()["spec"]["versions"]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec == crd.schema_of(ipreservation.IPReservationSpec), (
        "deploy/base/crd-ipreservation.yaml and multinet.api.ipreservation drifted apart"
    )


def test_fixed_names() -> None:
    doc = _doc()
    assert doc["metadata"]["name"] == f"{names.IPRESERVATION_PLURAL}.{names.IPRESERVATION_GROUP}"
    assert doc["spec"]["group"] == names.IPRESERVATION_GROUP == names.DRIVER
    assert doc["spec"]["names"] == {
        "kind": names.IPRESERVATION_KIND,
        "listKind": f"{names.IPRESERVATION_KIND}List",
        "plural": names.IPRESERVATION_PLURAL,
        "singular": names.IPRESERVATION_SINGULAR,
        "shortNames": [names.IPRESERVATION_SHORT_NAME],
    }
    (version,) = doc["spec"]["versions"]
    assert version["name"] == names.IPRESERVATION_VERSION


def test_selectable_fields_and_columns_name_model_fields() -> None:
    (version,) = _doc()["spec"]["versions"]
    fields = set(ipreservation.IPReservationSpec.model_fields)
    paths = [f["jsonPath"] for f in version["selectableFields"]]
    paths += [c["jsonPath"] for c in version["additionalPrinterColumns"]]
    for path in paths:
        if path.startswith(".spec."):
            assert path.split(".")[2] in fields, path


def test_model_accepts_what_the_agent_writes_and_rejects_unknown_fields() -> None:
    spec = {
        "network": "blue",
        "address": "10.1.0.5",
        "claim": {"namespace": "ns", "name": "c", "uid": "u-1"},
        "request": "nic",
        "device": "eth1",
        "node": "node-a",
        "pod": {"name": "app", "uid": "p-1"},
    }
    assert ipreservation.IPReservationSpec.model_validate(spec).claim.uid == "u-1"
    with pytest.raises(ValidationError):
        ipreservation.IPReservationSpec.model_validate({**spec, "extra": 1})
