"""The stored test vectors are exactly what the code produces today (and match the spec formulas)."""

from __future__ import annotations

import json

import pytest

from . import build


@pytest.mark.parametrize("name", ["pairing.json", "transactions.json"])
def test_vectors_match_the_code(name: str) -> None:
    stored = json.loads((build.HERE / name).read_text())
    assert build.build()[name] == stored, "regenerate with: python tests/vectors/build.py --write"
