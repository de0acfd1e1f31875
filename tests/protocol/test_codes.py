"""Error codes are one closed enum, and docs/protocol.md §10 lists exactly that set."""

from __future__ import annotations

import pathlib
import re

from tether import errors
from tether.errors import Code, LocalCode, WireCode

SPEC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def _section_10() -> str:
    text = SPEC.read_text()
    start = text.index("## 10. Errors")
    return text[start : text.index("\n## 11.", start)]


def _table_codes() -> set[str]:
    codes: set[str] = set()
    for row in _section_10().splitlines():
        if row.startswith("| `"):
            first_cell = row.split("|")[1]
            codes.update(re.findall(r"`([a-z_]+)`", first_cell))
    return codes


def test_the_spec_lists_every_wire_code_and_no_other() -> None:
    listed = _table_codes()
    assert listed, "the §10 table was not found"
    assert not re.search(r"`[a-z]+_\*`", _section_10()), "§10 lists codes by wildcard"
    members = {code.value for code in WireCode}
    assert sorted(members - listed) == [], "codes tether sends that §10 does not list"
    assert sorted(listed - members) == [], "codes §10 lists that tether does not know"


def test_local_codes_never_collide_with_wire_codes() -> None:
    assert not {c.value for c in WireCode} & {c.value for c in LocalCode}


def test_every_error_class_carries_an_enum_code() -> None:
    classes = [
        obj
        for obj in vars(errors).values()
        if isinstance(obj, type) and issubclass(obj, errors.TetherError)
    ]
    assert len(classes) >= 12
    for cls in classes:
        assert isinstance(cls.code, WireCode | LocalCode), cls
    protocol = [c for c in classes if issubclass(c, errors.ProtocolError)]
    assert all(isinstance(c.code, WireCode) for c in protocol)


def test_a_peer_code_outside_the_set_reads_as_unknown() -> None:
    assert WireCode.parse("grant_expired") is WireCode.GRANT_EXPIRED
    assert WireCode.parse("usage_error") is WireCode.UNKNOWN  # a local code never comes in
    assert WireCode.parse("\x1b[31mred") is WireCode.UNKNOWN
    assert WireCode.parse(7) is WireCode.UNKNOWN
    code: Code = WireCode.parse("bad_tag")
    assert code == "bad_tag"
