"""The JSON Schemas in docs/schemas/, for tests that check outputs against them."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

SCHEMAS = Path(__file__).resolve().parents[1] / "docs" / "schemas"


@cache
def schema(name: str) -> dict[str, Any]:
    return dict(json.loads((SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8")))


def analyze_json(text: str) -> dict[str, Any]:
    """Parse ``ratedial analyze --json`` output and validate it (docs/schemas/analyze)."""
    import jsonschema

    out = json.loads(text)
    jsonschema.validate(out, schema("analyze"))
    return dict(out)
