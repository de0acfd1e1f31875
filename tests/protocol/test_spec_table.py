"""docs/protocol.md §3's message table is the code's: every type, name, field key and field name."""

from __future__ import annotations

import re
from pathlib import Path

from tether.protocol import codec
from tether.protocol.messages import Error

SPEC = Path(__file__).parents[2] / "docs" / "protocol.md"
_ROW = re.compile(r"^\| (\d+) \| (\w+) \| [^|]+ \| (.+) \|$")
_FIELD = re.compile(r"(\d+): (\w+)")


def _table() -> dict[int, tuple[str, list[tuple[int, str]]]]:
    rows = {}
    for line in SPEC.read_text().splitlines():
        match = _ROW.match(line)
        if match:
            number, name, fields = match.groups()
            # Fields are "key: name type; key: name type"; take each "key: name" at a field start.
            listed = [
                (int(k), n)
                for part in fields.split(";")
                for k, n in _FIELD.findall(part.strip())[:1]
            ]
            rows[int(number)] = (name, listed)
    return rows


def test_every_message_is_in_the_spec_with_its_fields() -> None:
    table = _table()
    registered = codec.registered_types()
    assert set(table) == set(registered), "the spec's types are not the code's"
    for number, cls in registered.items():
        name, fields = table[number]
        assert name == cls.__name__, number
        assert fields == [(spec.key, field) for field, spec in cls._SPECS], cls.__name__


def test_the_specs_example_encoding_is_the_codecs() -> None:
    text = SPEC.read_text()
    example = re.search(r'`Error\{code: "x", message: "y"\}` is `([0-9a-f ]+)`', text)
    assert example is not None
    assert bytes.fromhex(example.group(1)) == codec.encode(Error(code="x", message="y"))
    assert f"`version` is `{codec.PROTOCOL_VERSION}`" in text
