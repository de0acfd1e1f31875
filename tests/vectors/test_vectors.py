"""The stored test vectors are exactly what the code produces today (and match the spec formulas)."""

from __future__ import annotations

import json

import pytest

from . import build


@pytest.mark.parametrize("name", ["pairing.json", "transactions.json", "grant.json", "remote.json"])
def test_vectors_match_the_code(name: str) -> None:
    stored = json.loads((build.HERE / name).read_text())
    assert build.build()[name] == stored, "regenerate with: python tests/vectors/build.py --write"


def test_the_documented_grant_is_the_vector() -> None:
    doc = (build.HERE.parents[1] / "docs" / "grant-vector.md").read_text()
    grant = json.loads((build.HERE / "grant.json").read_text())
    flat = "".join(doc.split())
    for field in ("protected", "payload", "signature", "cose_sign1"):
        assert grant[field] in flat, f"docs/grant-vector.md does not show the current {field}"
