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
    # An HTTP request's signature is refused with an HTTP status, never in an Error message.
    protocol = [
        c
        for c in classes
        if issubclass(c, errors.ProtocolError) and c is not errors.SignatureRefused
    ]
    assert all(isinstance(c.code, WireCode) for c in protocol)


def test_a_peer_code_outside_the_set_reads_as_unknown() -> None:
    assert WireCode.parse("grant_expired") is WireCode.GRANT_EXPIRED
    assert WireCode.parse("usage_error") is WireCode.UNKNOWN  # a local code never comes in
    assert WireCode.parse("\x1b[31mred") is WireCode.UNKNOWN
    assert WireCode.parse(7) is WireCode.UNKNOWN
    code: Code = WireCode.parse("bad_tag")
    assert code == "bad_tag"


def test_the_docstring_draws_the_whole_tree_and_only_it() -> None:
    """Every exception tether raises on purpose is defined in errors.py and drawn in its
    docstring under its real parent; nothing else defines one."""
    drawn: dict[str, str] = {}
    parents: list[str] = []
    for line in (errors.__doc__ or "").splitlines():
        found = re.match(r"^    ((?:[│ ]   )*)(?:[├└]── )?([A-Z]\w+)\s", line)
        if not found:
            continue
        depth = len(found.group(1)) // 4 + (1 if "──" in line else 0)
        name = found.group(2)
        del parents[depth:]
        drawn[name] = parents[-1] if parents else ""
        parents.append(name)
    classes = {
        name: obj
        for name, obj in vars(errors).items()
        if isinstance(obj, type) and issubclass(obj, errors.TetherError)
    }
    assert set(drawn) == set(classes)
    for name, parent in drawn.items():
        base = classes[name].__bases__[0]
        assert base.__name__ == (parent or "Exception"), name
    src = pathlib.Path(errors.__file__).parent
    for path in src.rglob("*.py"):
        if path.name != "errors.py":
            text = path.read_text()
            for name in classes:
                assert f"class {name}(" not in text, (path, name)
            assert not re.search(r"^class \w+\((?:\w+Error|TetherError)\):", text, re.M), path
