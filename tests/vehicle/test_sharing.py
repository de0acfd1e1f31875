"""Sharing and revocation through the real agent (in memory): grants, delegation, revocation."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tether.errors import PeerError
from tether.link import bundles
from tether.phone import client, sharing
from tether.phone.wallet import CarKey, PhoneWallet
from tether.protocol import credentials
from tether.protocol.commands import Command
from tether.protocol.crypto import PrivateKey
from tether.protocol.messages import RevocationResult

from .conftest import Rig

NOW = 1000.0


def share(
    rig: Rig,
    issuer: CarKey,
    friend: PhoneWallet,
    *,
    rights: set[str],
    name: str,
    nbf: float = 0,
    exp: float = NOW + 3600,
    limits: credentials.Limits | None = None,
    label: str = "Bea",
) -> CarKey:
    """What `phone key-request`, `phone share` and `phone accept` do, in process (via a link)."""
    key = rig.entropy.new_private_key()
    friend.add_request(key, now=NOW)
    request = bundles.read_request(bundles.make_request(key.public_key, label))
    bundle = sharing.issue(
        issuer,
        request,
        rights=frozenset(rights),
        not_before=int(nbf),
        expires=int(exp),
        limits=limits or credentials.Limits(),
        serial=os.urandom(16),
        now=int(NOW),
    )
    return sharing.accept(
        friend, bundles.read_bundle(bundle.link()), name=name, now=min(NOW, exp - 1)
    )


def share_unchecked(
    rig: Rig, issuer: CarKey, friend: PhoneWallet, *, rights: set[str], name: str
) -> CarKey:
    """A sub-grant made without the phone's own checks: what a hostile or buggy phone could sign."""
    key = rig.entropy.new_private_key()
    friend.add_request(key, now=NOW)
    chain = credentials.read_credential(issuer.credential or b"")
    grant = credentials.issue_grant(
        issuer.endpoint_key,
        grantee=key.public_key,
        vehicle_id=issuer.vehicle_id,
        rights=frozenset(rights),
        not_before=0,
        expires=int(NOW + 3600),
        serial=os.urandom(16),
        issued_at=int(NOW),
        parent=chain[-1],
    )
    bundle = bundles.Bundle(
        grants=(*chain, credentials.parse_grant(grant)),
        vehicle_key=issuer.vehicle_key,
        vehicle_name="car",
        address="memory",
    )
    return sharing.accept(friend, bundle, name=name, now=NOW)


async def run(
    rig: Rig, wallet: PhoneWallet, car: CarKey, command: Command, *, fast: bool = True
) -> client.Outcome:
    car = wallet.car(car.name)
    transport = await rig.listener.connect()
    try:
        (outcome,) = await client.run_commands(
            transport,
            car,
            [command],
            entropy=rig.entropy,
            fast=fast,
            persist=lambda k: wallet.set_persistent_key(car.name, k),
        )
    finally:
        await transport.close()
    return outcome


async def revoke(
    rig: Rig,
    owner: CarKey,
    *,
    keys: Sequence[bytes] = (),
    grants: Sequence[bytes] = (),
    seq: int,
    raw: bytes | None = None,
) -> RevocationResult:
    revocation = raw or credentials.issue_revocation(
        owner.endpoint_key,
        vehicle_id=owner.vehicle_id,
        seq=seq,
        keys=list(keys),
        grants=list(grants),
        issued_at=int(NOW),
    )
    transport = await rig.listener.connect()
    try:
        return await client.deliver_revocation(
            transport,
            rig.wallet.car(owner.name),
            revocation,
            entropy=rig.entropy,
            persist=lambda k: rig.wallet.set_persistent_key(owner.name, k),
        )
    finally:
        await transport.close()


@pytest.fixture
def friend(tmp_path: Path) -> Iterator[PhoneWallet]:
    wallet = PhoneWallet.create(tmp_path / "friend", name="Bea's phone", passphrase="bea")
    yield wallet
    wallet.close()


async def test_share_use_revoke(rig: Rig, friend: PhoneWallet) -> None:
    owner = await rig.pair()
    key = share(rig, owner, friend, rights={"unlock", "lock"}, name="car")
    first = await run(rig, friend, key, Command.UNLOCK)
    assert first.result.ok and not first.fast  # first use: standard, with the credential
    endpoint = rig.store.endpoint(key.endpoint_id)
    assert (
        endpoint is not None and endpoint.role == "friend" and endpoint.rights == {"unlock", "lock"}
    )
    assert (await run(rig, friend, key, Command.LOCK)).fast
    start = await run(rig, friend, key, Command.START, fast=False)
    assert not start.result.ok and start.result.reason == "no_right"

    result = await revoke(rig, owner, keys=[key.endpoint_id], seq=1)
    assert result.ok and result.seq == 1
    with pytest.raises(PeerError) as refused:
        await run(rig, friend, key, Command.UNLOCK)  # even with its fast key
    assert refused.value.code == "unknown_key"
    # Replaying the old grant as if for the first time: refused as revoked.
    replay = friend.car(key.name)
    replay_key = CarKey(
        **{
            **{f: getattr(replay, f) for f in replay.__dataclass_fields__},
            "enrolled": False,
            "persistent_key": None,
        }
    )
    transport = await rig.listener.connect()
    with pytest.raises(PeerError) as again:
        await client.run_commands(
            transport,
            replay_key,
            [Command.UNLOCK],
            entropy=rig.entropy,
            fast=False,
            persist=lambda k: None,
        )
    assert again.value.code == "grant_revoked"
    reasons = [e.reason for e in rig.store.audit_entries()]
    assert "no_right" in reasons and "unknown_key" in reasons and "grant_revoked" in reasons


async def test_revoking_a_grant_cascades_to_sub_grants(
    rig: Rig, friend: PhoneWallet, tmp_path: Path
) -> None:
    owner = await rig.pair()
    bea = share(rig, owner, friend, rights={"unlock", "lock", "share"}, name="car")
    child_wallet = PhoneWallet.create(tmp_path / "child", name="Cy", passphrase="cy")
    cy = share(rig, friend.car("car"), child_wallet, rights={"unlock"}, name="car", exp=NOW + 1800)
    assert (await run(rig, child_wallet, cy, Command.UNLOCK)).result.ok
    assert rig.store.endpoint(cy.endpoint_id).role == "delegate"  # type: ignore[union-attr]
    root_serial = credentials.decode_chain(bea.credential or b"")[0]
    serial = credentials.parse_grant(root_serial).serial
    assert (await revoke(rig, owner, grants=[serial], seq=2)).ok
    for wallet, key in ((friend, bea), (child_wallet, cy)):
        with pytest.raises(PeerError):
            await run(rig, wallet, key, Command.UNLOCK)
    # Cy's key (enrolled through the sub-grant) is revoked; Bea never used hers, and her grant
    # serial is now refused wherever it appears.
    assert rig.store.is_revoked(cy.endpoint_id) and rig.store.is_revoked(serial)
    child_wallet.close()


async def test_revocations_are_idempotent_and_old_ones_refused(
    rig: Rig, friend: PhoneWallet
) -> None:
    owner = await rig.pair()
    a = share(rig, owner, friend, rights={"unlock"}, name="a")
    b = share(rig, owner, friend, rights={"unlock"}, name="b")
    first = credentials.issue_revocation(
        owner.endpoint_key,
        vehicle_id=owner.vehicle_id,
        seq=10,
        keys=[a.endpoint_id],
        issued_at=int(NOW),
    )
    assert (await revoke(rig, owner, seq=10, raw=first)).ok
    again = await revoke(rig, owner, seq=10, raw=first)
    assert again.ok and "Already" in again.message
    old = await revoke(rig, owner, keys=[b.endpoint_id], seq=9)
    assert not old.ok and old.reason == "revocation_replayed"
    assert (await run(rig, friend, b, Command.UNLOCK)).result.ok  # b was not revoked


async def test_only_owners_sign_revocations(rig: Rig, friend: PhoneWallet) -> None:
    owner = await rig.pair()
    bea = share(rig, owner, friend, rights={"unlock", "share"}, name="car")
    assert (await run(rig, friend, bea, Command.UNLOCK)).result.ok
    forged = credentials.issue_revocation(
        bea.endpoint_key,
        vehicle_id=owner.vehicle_id,
        seq=50,
        keys=[owner.endpoint_id],
        issued_at=int(NOW),
    )
    result = await revoke(rig, owner, seq=50, raw=forged)
    assert not result.ok and result.reason == "revocation_unknown_issuer"
    assert (await run(rig, rig.wallet, owner, Command.UNLOCK)).result.ok


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"exp": NOW - 1}, "grant_expired"),
        ({"nbf": NOW + 100}, "grant_not_yet_valid"),
    ],
)
async def test_grants_outside_their_window(
    rig: Rig, friend: PhoneWallet, kwargs: dict[str, float], code: str
) -> None:
    owner = await rig.pair()
    key = share(rig, owner, friend, rights={"unlock"}, name="car", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(PeerError) as info:
        await run(rig, friend, key, Command.UNLOCK)
    assert info.value.code == code
    assert rig.store.audit_entries()[-1].reason == code


async def test_hours_limit_and_window_at_command_time(rig: Rig, friend: PhoneWallet) -> None:
    import time as _time

    owner = await rig.pair()
    hour = _time.localtime(NOW).tm_hour
    outside = credentials.Limits(hours=((hour + 2) % 24, (hour + 3) % 24))
    key = share(rig, owner, friend, rights={"unlock"}, name="car", limits=outside)
    result = await run(rig, friend, key, Command.UNLOCK)
    assert not result.result.ok and result.result.reason == "outside_hours"


async def test_a_clock_set_back_does_not_revive_an_expired_grant(
    rig: Rig, friend: PhoneWallet
) -> None:
    owner = await rig.pair()
    key = share(rig, owner, friend, rights={"unlock"}, name="car", exp=NOW + 60)
    assert (await run(rig, friend, key, Command.UNLOCK)).result.ok
    rig.agent.clock = lambda: NOW + 120  # the grant has expired
    assert (await run(rig, friend, key, Command.UNLOCK)).result.reason == "expired"
    rig.agent.clock = lambda: NOW  # someone sets the car's clock back
    assert (await run(rig, friend, key, Command.UNLOCK)).result.reason == "expired"


async def test_a_friend_without_share_cannot_delegate(
    rig: Rig, friend: PhoneWallet, tmp_path: Path
) -> None:
    owner = await rig.pair()
    bea = share(rig, owner, friend, rights={"unlock"}, name="car")
    other = PhoneWallet.create(tmp_path / "other", name="Cy", passphrase="cy")
    from tether.errors import UsageError

    with pytest.raises(UsageError, match="right to share"):
        share(rig, friend.car("car"), other, rights={"unlock"}, name="car")
    cy = share_unchecked(rig, friend.car("car"), other, rights={"unlock"}, name="car")
    with pytest.raises(PeerError) as info:
        await run(rig, other, cy, Command.UNLOCK)
    assert info.value.code == "grant_no_share_right"
    assert bea
    other.close()


async def test_a_sub_grant_widening_rights_is_refused(
    rig: Rig, friend: PhoneWallet, tmp_path: Path
) -> None:
    owner = await rig.pair()
    share(rig, owner, friend, rights={"unlock", "share"}, name="car")
    other = PhoneWallet.create(tmp_path / "other", name="Cy", passphrase="cy")
    from tether.errors import UsageError

    with pytest.raises(UsageError, match="rights you hold"):
        share(rig, friend.car("car"), other, rights={"unlock", "drive"}, name="car")
    cy = share_unchecked(rig, friend.car("car"), other, rights={"unlock", "drive"}, name="car")
    with pytest.raises(PeerError) as info:
        await run(rig, other, cy, Command.UNLOCK)
    assert info.value.code == "grant_widens_rights"
    other.close()


def test_bundles_and_requests_refuse_garbage() -> None:
    from tether.errors import UsageError

    for bad in (
        b"",
        b"\x00",
        b"junk",
        bundles.make_request(PrivateKey.from_scalar(b"\x01" * 32).public_key, "x"),
    ):
        with pytest.raises(UsageError):
            bundles.read_bundle(bad)
    with pytest.raises(UsageError, match="starts with"):
        bundles.read_bundle("https://example.invalid/grant")
    with pytest.raises(UsageError, match=r"damaged|not a tether grant"):
        bundles.read_bundle(bundles.LINK_PREFIX + "!!!")
    with pytest.raises(UsageError):
        bundles.read_request(b"\xa0")
