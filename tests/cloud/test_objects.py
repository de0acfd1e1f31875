"""What the server derives from signed objects: which keys a revocation closes on its side."""

from __future__ import annotations

from tether.cloud.api.objects import closed_keys

# A car's grants as (serial, grantee, serials above it): Ada -> Bea -> Cal -> Dan, and Ada -> Eve.
GRANTS = [
    (b"A", b"bea", set()),
    (b"B", b"cal", {b"A"}),
    (b"C", b"dan", {b"A", b"B"}),
    (b"D", b"eve", set()),
]


def test_a_revoked_grant_closes_its_holder_and_everything_below() -> None:
    assert closed_keys(frozenset(), frozenset({b"A"}), GRANTS) == {b"bea", b"cal", b"dan"}
    assert closed_keys(frozenset(), frozenset({b"B"}), GRANTS) == {b"cal", b"dan"}


def test_a_revoked_key_closes_what_it_was_given_and_what_it_gave() -> None:
    assert closed_keys(frozenset({b"cal"}), frozenset(), GRANTS) == {b"cal", b"dan"}
    assert closed_keys(frozenset({b"eve"}), frozenset(), GRANTS) == {b"eve"}


def test_a_key_without_grants_closes_only_itself() -> None:
    assert closed_keys(frozenset({b"zed"}), frozenset({b"nope"}), GRANTS) == {b"zed"}
    assert closed_keys(frozenset(), frozenset(), []) == set()
