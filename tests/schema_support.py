"""Validating specs against the official OCI and CDI JSON schemas in ../shared."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support import shared_path


def oci_validator() -> Any:
    """A Draft 4 validator for config-schema.json, resolving its relative $refs."""
    jsonschema = pytest.importorskip("jsonschema")
    referencing = pytest.importorskip("referencing")
    folder: Path = shared_path("oci-runtime-spec")
    resources = []
    for path in folder.glob("*.json"):
        contents = json.loads(path.read_text())
        resource = referencing.Resource.from_contents(
            contents, default_specification=referencing.jsonschema.DRAFT4
        )
        resources.append((path.name, resource))
        resources.append((f"file://{path}", resource))
    registry = referencing.Registry().with_resources(resources)
    schema = json.loads((folder / "config-schema.json").read_text())
    return jsonschema.Draft4Validator(schema, registry=registry)


def schema_errors(spec: dict[str, Any]) -> list[str]:
    """The schema's complaints about ``spec`` (empty when it validates)."""
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in oci_validator().iter_errors(spec)
    ]


def cdi_validator() -> Any:
    """A Draft 7 validator for CDI's spec schema (schema.json with its defs.json)."""
    jsonschema = pytest.importorskip("jsonschema")
    referencing = pytest.importorskip("referencing")
    folder: Path = shared_path("cdi-spec")
    resources = [
        (
            name,
            referencing.Resource.from_contents(
                json.loads((folder / name).read_text()),
                default_specification=referencing.jsonschema.DRAFT7,
            ),
        )
        for name in ("schema.json", "defs.json")
    ]
    registry = referencing.Registry().with_resources(resources)
    return jsonschema.Draft7Validator({"$ref": "schema.json"}, registry=registry)


def cdi_schema_errors(spec: dict[str, Any]) -> list[str]:
    """CDI's JSON schema's complaints about ``spec`` (empty when it validates)."""
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in cdi_validator().iter_errors(spec)
    ]
