"""(Phone) Sharing a key: sign grants for key requests, accept bundles, sign revocations."""

from __future__ import annotations

import os

from tether.errors import GrantError, UsageError
from tether.link.bundles import Bundle, KeyRequest
from tether.phone.wallet import CarKey, IssuedGrant, KeyStatus, PhoneWallet
from tether.protocol.credentials import (
    MAX_CHAIN,
    SERIAL_SIZE,
    Grant,
    Limits,
    encode_chain,
    issue_grant,
    issue_revocation,
    parse_grant,
    read_credential,
    verify_chain,
)
from tether.protocol.names import Role, role_of_chain


def issue(
    issuer: CarKey,
    request: KeyRequest,
    *,
    rights: frozenset[str],
    not_before: int,
    expires: int,
    limits: Limits,
    serial: bytes,
    now: int,
) -> Bundle:
    """Sign a grant for ``request`` from ``issuer``: the owner's key, or a granted key with share.

    A sub-grant inherits the issuer's chain; asking for more than the issuer holds is refused here
    with a sentence (the car would refuse it anyway).
    """
    chain: list[Grant] = []
    parent: Grant | None = None
    if issuer.role != Role.OWNER:
        if issuer.credential is None:
            raise UsageError("this key has no grant to share from")
        chain = read_credential(issuer.credential)
        parent = chain[-1]
        if "share" not in parent.rights:
            raise UsageError("your key does not carry the right to share")
        if not rights <= parent.rights:
            raise UsageError(f"you can only pass on rights you hold: {sorted(parent.rights)}")
        not_before, expires = max(not_before, parent.not_before), min(expires, parent.expires)
        if not limits.within(parent.limits):
            limits = parent.limits
    grant = issue_grant(
        issuer.endpoint_key,
        grantee=request.key,
        vehicle_id=issuer.vehicle_id,
        rights=rights,
        not_before=not_before,
        expires=expires,
        serial=serial,
        issued_at=now,
        limits=limits,
        parent=parent,
        label=request.label,
    )
    return Bundle(
        grants=(*chain, parse_grant(grant)),
        vehicle_key=issuer.vehicle_key,
        vehicle_name=issuer.vehicle_name,
        address=issuer.address,
        owner_key=issuer.endpoint_key.public_key if issuer.role == Role.OWNER else None,
    )


def grant(
    issuer: CarKey,
    request: KeyRequest,
    *,
    rights: frozenset[str],
    not_before: int,
    expires: int,
    limits: Limits,
    now: int,
) -> tuple[Bundle, IssuedGrant]:
    """Sign a grant with a fresh serial; the bundle to send and the record for the wallet."""
    serial = os.urandom(SERIAL_SIZE)
    bundle = issue(
        issuer,
        request,
        rights=rights,
        not_before=not_before,
        expires=expires,
        limits=limits,
        serial=serial,
        now=now,
    )
    record = IssuedGrant(
        serial=serial,
        car=issuer.name,
        grantee_id=request.key.key_id,
        label=request.label,
        rights=rights,
        not_before=float(bundle.leaf.not_before),
        not_after=float(bundle.leaf.expires),
        issued_at=float(now),
        revoked_seq=None,
    )
    return bundle, record


def accept(wallet: PhoneWallet, bundle: Bundle, *, name: str, now: float) -> CarKey:
    """Store a received grant for the key this phone requested; refuse foreign or expired ones.

    Everything is checked before anything is bound: the chain's signatures (the owner's too, when
    the bundle carries the owner's key), that it narrows at every step, the window, and that it
    names a key this phone asked for. A bad file changes nothing, so the genuine one still works.
    """
    leaf = bundle.leaf
    check_bundle(bundle, now=now)
    key = wallet.take_request(leaf.grantee.key_id)
    if key is None:
        raise UsageError("this grant is for a key this phone did not request (a foreign grant)")
    name, replaces = _name_for(wallet, bundle, name)
    car = wallet.add_car(
        name=name,
        replaces=replaces,
        vehicle_key=bundle.vehicle_key,
        vehicle_name=bundle.vehicle_name,
        address=bundle.address,
        endpoint_key=key,
        role=role_of_chain(len(bundle.chain)),
        rights=leaf.rights,
        not_before=float(leaf.not_before),
        not_after=float(leaf.expires),
        limits=leaf.limits,
        credential=encode_chain(bundle.chain),
        now=now,
    )
    wallet.drop_request(leaf.grantee.key_id)
    return car


def _name_for(wallet: PhoneWallet, bundle: Bundle, wanted: str) -> tuple[str, str | None]:
    """The new key's name, and the refused key of the same car it replaces (if any).

    A key the car refused (revoked) can never work again, so a new grant for that car takes its
    place instead of sitting beside it as a second key; otherwise a default name gets a suffix.
    """
    cars = {c.name: c for c in wallet.cars()}
    base = wanted or bundle.vehicle_name
    dead = cars.get(base)
    if (
        dead is not None
        and dead.status is KeyStatus.REVOKED
        and dead.vehicle_key.encoded == bundle.vehicle_key.encoded
    ):
        return base, base
    if wanted:
        return wanted, None  # a name the person chose: add_car says if it is taken
    name, suffix = base, 2
    while name in cars:
        name, suffix = f"{base} ({suffix})", suffix + 1
    return name, None


def check_bundle(bundle: Bundle, *, now: float) -> None:
    """The car's own checks of a credential, as far as a phone can make them (UsageError)."""
    if now >= bundle.leaf.expires:
        raise UsageError("this grant has already expired")
    owner = bundle.owner_key
    if owner is None:
        # A bundle a friend re-shared (its phone does not hold the owner's key): the shape was
        # checked when it was read; the signatures are the car's to check at first use.
        return
    starts = max(g.not_before for g in bundle.grants)
    try:
        verify_chain(
            bundle.grants,
            vehicle_id=bundle.vehicle_key.key_id,
            owner_key=lambda key_id: owner if key_id == owner.key_id else None,
            is_revoked=lambda _: False,  # the car knows; the phone cannot
            now=max(now, float(starts)),
            max_depth=MAX_CHAIN,
        )
    except GrantError as exc:
        raise UsageError(f"this grant is damaged or forged ({exc.code}): {exc.message}") from None


def make_revocation(
    wallet: PhoneWallet, car: CarKey, *, keys: list[bytes], serials: list[bytes], now: float
) -> tuple[int, bytes]:
    """(Owner) Sign a revocation of ``keys`` and ``serials`` with the next sequence number."""
    if car.role != Role.OWNER:
        raise UsageError("only an owner key can revoke")
    seq = wallet.next_revocation_seq(now)
    raw = issue_revocation(
        car.endpoint_key,
        vehicle_id=car.vehicle_id,
        seq=seq,
        keys=keys,
        grants=serials,
        issued_at=int(now),
    )
    return seq, raw
