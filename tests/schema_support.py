"""Validating specs against the official OCI JSON schema in ../shared."""

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
