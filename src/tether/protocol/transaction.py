"""Standard and fast transactions (docs/protocol.md §6): mutual authentication and session keys.

Standard (SIGMA-I; both sides generate fresh ephemerals)::

    P -> V  StandardHello {eP, nP}
    V -> P  VehicleAuth   {eV, nV, AEAD_hv(sig_V(TH1))}                  car proves itself first
    P -> V  PhoneAuth     {AEAD_hp(endpoint_id || sig_P(TH1 || endpoint_id))}
    V -> P  Finished      {HMAC(kf, TH2)}

The phone may send its first commands as channel records right behind PhoneAuth or FastProof
(saving a round trip); the car reads them only once it accepted the proof.

Fast (symmetric only; needs the persistent key of an earlier transaction), in one round trip
because the car's greeting already carried its fresh nonce::

    V -> P  VehicleHello  {nV}                                  first on every connection
    P -> V  FastProof     {nP, HMAC(Kp, "fast-phone" || TH)}    names no key; commands right behind
    V -> P  Finished      {HMAC(kf, TH || cryptogram)}          or Fallback -> standard

The vehicle finds the phone's key by trying its stored persistent keys, most recently used first.
Each fast transaction replaces Kp by a one-way successor on both sides, so a key stolen today
opens no recorded session. A fast session may only lock, unlock and open the trunk (session.py).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Sequence
from typing import ClassVar, Protocol

from tether.errors import (
    AuthenticationFailed,
    GrantError,
    LocalProtocolError,
    MalformedMessage,
    WireCode,
)
from tether.protocol import credentials, crypto
from tether.protocol.channel import ChannelKeys
from tether.protocol.credentials import VerifiedChain
from tether.protocol.crypto import (
    KEY_ID_SIZE,
    SIGNATURE_SIZE,
    Aead,
    Entropy,
    PrivateKey,
    PublicKey,
    Signer,
)
from tether.protocol.machine import Event, StateMachine, Step, rule
from tether.protocol.messages import (
    NONCE_SIZE,
    Fallback,
    FastProof,
    Finished,
    PhoneAuth,
    Record,
    StandardHello,
    VehicleAuth,
    VehicleHello,
)
from tether.protocol.session import PhoneSession, VehicleSession

_ZERO_NONCE = bytes(12)  # each handshake key seals exactly one message
_STANDARD = b"tether/2 standard"
_FAST = b"tether/2 fast"
_STANDARD_KEYS = b"tether/2 standard keys"
_FAST_SESSION = b"tether/2 fast session"
_VEHICLE_SIG = b"tether/2 vehicle-auth"
_PHONE_SIG = b"tether/2 phone-auth"
_FAST_PHONE = b"tether/2 fast-phone"
_SESSION_KEYS_SIZE = 32 + 32 + 12 + 12 + 32 + 32
_PROOF_SIZE = KEY_ID_SIZE + SIGNATURE_SIZE
_ALL_KEYS_SIZE = 32 + 32 + _SESSION_KEYS_SIZE


@dataclasses.dataclass(frozen=True, slots=True)
class _SessionSecrets:
    keys_p2v: bytes
    keys_v2p: bytes
    iv_p2v: bytes
    iv_v2p: bytes
    persistent: bytes
    finished: bytes

    @classmethod
    def derive(cls, ikm: bytes, salt: bytes, info: bytes) -> _SessionSecrets:
        return cls.split(crypto.hkdf(ikm, salt=salt, info=info, length=_SESSION_KEYS_SIZE))

    @classmethod
    def split(cls, okm: bytes) -> _SessionSecrets:
        return cls(okm[0:32], okm[32:64], okm[64:76], okm[76:88], okm[88:120], okm[120:152])

    def phone_keys(self) -> ChannelKeys:
        return ChannelKeys(
            send_key=self.keys_p2v, send_iv=self.iv_p2v, recv_key=self.keys_v2p, recv_iv=self.iv_v2p
        )

    def vehicle_keys(self) -> ChannelKeys:
        return ChannelKeys(
            send_key=self.keys_v2p, send_iv=self.iv_v2p, recv_key=self.keys_p2v, recv_iv=self.iv_p2v
        )


def _standard_keys(shared: bytes, th1: bytes) -> tuple[bytes, bytes, _SessionSecrets]:
    """Handshake keys (vehicle->phone, phone->vehicle) and session secrets, in one HKDF.

    Deriving the session from TH1 is sound because both signatures cover TH1 and the Finished
    MAC covers the whole transcript (docs/protocol.md §6.2).
    """
    okm = crypto.hkdf(shared, salt=th1, info=_STANDARD_KEYS, length=_ALL_KEYS_SIZE)
    return okm[:32], okm[32:64], _SessionSecrets.split(okm[64:])


def fast_transcript(nonce_v: bytes, nonce_p: bytes, vehicle_id: bytes) -> bytes:
    """TH of a fast transaction: the car's greeting nonce first, so the car chose freshness."""
    return crypto.sha256(_FAST + nonce_v + nonce_p + vehicle_id)


class EndpointDirectory(Protocol):
    """The vehicle's view of its enrolled phones, injected by the caller (the key store)."""

    max_depth: int  # the longest delegation chain this car accepts

    def endpoint_key(self, endpoint_id: bytes) -> PublicKey | None:
        """The public key of an enrolled, unrevoked endpoint, or None."""

    def persistent_keys(self) -> Iterable[tuple[bytes, bytes]]:
        """(endpoint_id, persistent key) pairs, most recently used first."""

    def owner_key(self, key_id: bytes) -> PublicKey | None:
        """An enrolled, unrevoked owner key (the only signer of root grants), or None."""

    def is_revoked(self, some_id: bytes) -> bool:
        """True for a revoked key id or grant serial."""


class MemoryDirectory:
    """An :class:`EndpointDirectory` in memory: for tests, benchmarks and the in-process demo."""

    def __init__(self, *, max_depth: int = credentials.DEFAULT_MAX_DEPTH) -> None:
        self.max_depth = max_depth
        self.keys: dict[bytes, PublicKey] = {}
        self.owners: set[bytes] = set()
        self.persistent: dict[bytes, bytes] = {}
        self.revoked: set[bytes] = set()

    def enroll(self, key: PublicKey, *, owner: bool = False) -> None:
        self.keys[key.key_id] = key
        if owner:
            self.owners.add(key.key_id)

    def endpoint_key(self, endpoint_id: bytes) -> PublicKey | None:
        return None if endpoint_id in self.revoked else self.keys.get(endpoint_id)

    def persistent_keys(self) -> Iterable[tuple[bytes, bytes]]:
        return [(k, v) for k, v in self.persistent.items() if k not in self.revoked]

    def owner_key(self, key_id: bytes) -> PublicKey | None:
        return self.endpoint_key(key_id) if key_id in self.owners else None

    def is_revoked(self, some_id: bytes) -> bool:
        return some_id in self.revoked


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CredentialAccepted(Event):
    """Vehicle event: a phone proved possession of a granted key on first use; enrol it first."""

    chain: VerifiedChain


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PersistentKeyChanged(Event):
    """Either side: persist ``key`` as the endpoint's persistent key (replacing the old one)."""

    endpoint_id: bytes
    key: bytes


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FastFallback(Event):
    """Either side: the fast transaction did not match; a standard one follows."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Established(Event):
    """Either side: the transaction succeeded; carry on with ``session``."""

    session: VehicleSession | PhoneSession
    endpoint_id: bytes
    fast: bool


class TxState(enum.Enum):
    START = "start"
    AWAIT_GREETING = "await_greeting"
    SENT_STANDARD_HELLO = "sent_standard_hello"
    SENT_VEHICLE_AUTH = "sent_vehicle_auth"
    SENT_PHONE_AUTH = "sent_phone_auth"
    SENT_FAST_PROOF = "sent_fast_proof"
    AWAIT_STANDARD = "await_standard"
    ESTABLISHED = "established"
    FAILED = "failed"


_T = TxState


class PhoneTransaction(StateMachine[TxState]):
    """The phone's side: fast when it holds a persistent key (and may), otherwise standard."""

    FAILED: ClassVar = _T.FAILED
    DONE: ClassVar = _T.ESTABLISHED

    def __init__(
        self,
        *,
        endpoint_key: PrivateKey,
        vehicle_key: PublicKey,
        persistent_key: bytes | None,
        entropy: Entropy,
        fast: bool = True,
        early_commands: Sequence[str] = (),
        credential: bytes | None = None,
    ) -> None:
        super().__init__(_T.START)
        self._early = tuple(early_commands)
        self._credential = credential or b""
        self._session: PhoneSession | None = None
        self._endpoint_key = endpoint_key
        self._endpoint_id = endpoint_key.public_key.key_id
        self._vehicle_key = vehicle_key
        self._persistent = persistent_key
        self._entropy = entropy
        self._want_fast = fast and persistent_key is not None
        self._eph: PrivateKey | None = None
        self._nonce = b""
        self._greeting = b""
        self._transcript = b""
        self._secrets: _SessionSecrets | None = None

    def start(self) -> None:
        """Arm the machine: the phone speaks only after the car's greeting (§4)."""
        if self.state is not _T.START:
            raise LocalProtocolError("transaction already started")
        self.state = _T.AWAIT_GREETING

    def _on_greeting(self, msg: VehicleHello, now: float) -> Step:
        """Fast proof (with the early commands behind it) at once, or a standard hello."""
        self._greeting = msg.nonce
        if not self._want_fast:
            self._send_standard_hello()
            return [], _T.SENT_STANDARD_HELLO
        assert self._persistent is not None
        self._nonce = self._entropy.random_bytes(NONCE_SIZE)
        th = fast_transcript(msg.nonce, self._nonce, self._vehicle_key.key_id)
        cryptogram = crypto.mac(self._persistent, _FAST_PHONE + th)
        self._send(FastProof(nonce=self._nonce, cryptogram=cryptogram))
        self._transcript = th + cryptogram
        self._secrets = _SessionSecrets.derive(self._persistent, th, _FAST_SESSION)
        self._open_session(fast=True)
        return [], _T.SENT_FAST_PROOF

    def _send_standard_hello(self) -> None:
        self._eph = self._entropy.new_private_key()
        self._nonce = self._entropy.random_bytes(NONCE_SIZE)
        self._send(StandardHello(ephemeral=self._eph.public_bytes, nonce=self._nonce))

    def _on_vehicle_auth(self, msg: VehicleAuth, now: float) -> Step:
        assert self._eph is not None
        eph_v = PublicKey(msg.ephemeral)
        th1 = crypto.sha256(
            _STANDARD
            + self._greeting
            + self._eph.public_bytes
            + self._nonce
            + msg.ephemeral
            + msg.nonce
            + self._vehicle_key.key_id
        )
        hs_v2p, hs_p2v, secrets = _standard_keys(self._eph.exchange(eph_v), th1)
        vehicle_signature = Aead(hs_v2p).open(_ZERO_NONCE, msg.sealed, th1)
        self._vehicle_key.verify(vehicle_signature, _VEHICLE_SIG + th1)
        # Only now, talking to the authenticated car, does the phone reveal who it is.
        proof = self._endpoint_id + self._endpoint_key.sign(_PHONE_SIG + th1 + self._endpoint_id)
        sealed = Aead(hs_p2v).seal(_ZERO_NONCE, proof + self._credential, th1)
        self._send(PhoneAuth(sealed=sealed))
        self._transcript = crypto.sha256(th1 + msg.sealed + sealed)
        self._secrets = secrets
        self._open_session(fast=False)
        return [], _T.SENT_PHONE_AUTH

    def _open_session(self, *, fast: bool) -> None:
        """Make the session now and send the early commands right behind the proof.

        They save a round trip and are safe: sealed under keys only the car that answers this
        very transcript can derive, and processed by it only after it accepted the proof. A car
        that falls back discards them; they are sent again in the standard session.
        """
        assert self._secrets is not None
        self._session = PhoneSession(
            self._secrets.phone_keys(), endpoint_id=self._endpoint_id, fast=fast
        )
        for command in self._early:
            self._session.request(command)
        self._outbox.extend(self._session.data_to_send())

    def _on_fallback(self, msg: Fallback, now: float) -> Step:
        self._want_fast = False
        self._secrets = None
        self._session = None
        self._send_standard_hello()
        return [FastFallback()], _T.SENT_STANDARD_HELLO

    def _on_finished(self, msg: Finished, now: float) -> Step:
        assert self._secrets is not None and self._session is not None
        secrets = self._secrets
        if not crypto.equal(msg.mac, crypto.mac(secrets.finished, self._transcript)):
            raise AuthenticationFailed(
                "the car did not confirm the session", code=WireCode.BAD_FINISHED
            )
        fast = self.state is _T.SENT_FAST_PROOF
        session = self._session
        return [
            PersistentKeyChanged(endpoint_id=self._endpoint_id, key=secrets.persistent),
            Established(session=session, endpoint_id=self._endpoint_id, fast=fast),
        ], _T.ESTABLISHED

    TRANSITIONS: ClassVar = {
        (_T.AWAIT_GREETING, VehicleHello): rule(
            _on_greeting, _T.SENT_STANDARD_HELLO, _T.SENT_FAST_PROOF
        ),
        (_T.SENT_STANDARD_HELLO, VehicleAuth): rule(_on_vehicle_auth, _T.SENT_PHONE_AUTH),
        (_T.SENT_PHONE_AUTH, Finished): rule(_on_finished, _T.ESTABLISHED),
        (_T.SENT_FAST_PROOF, Finished): rule(_on_finished, _T.ESTABLISHED),
        (_T.SENT_FAST_PROOF, Fallback): rule(_on_fallback, _T.SENT_STANDARD_HELLO),
    }


class VehicleTransaction(StateMachine[TxState]):
    """The vehicle's side: answers whichever transaction the phone starts."""

    FAILED: ClassVar = _T.FAILED
    DONE: ClassVar = _T.ESTABLISHED

    def __init__(
        self,
        *,
        vehicle_key: Signer,
        directory: EndpointDirectory,
        entropy: Entropy,
        greeting: bytes | None = None,
    ) -> None:
        """``greeting``: the nonce of the VehicleHello the caller already sent on this connection
        (the agent greets before it knows what the phone wants); without it the machine draws
        one and queues the greeting itself."""
        super().__init__(_T.START)
        self._vehicle_key = vehicle_key
        self._vehicle_id = vehicle_key.public_key.key_id
        self._directory = directory
        self._entropy = entropy
        self._th1 = b""
        self._secrets: _SessionSecrets | None = None
        self._sealed_v = b""
        self._hs_p2v = b""
        if greeting is None:
            greeting = self._entropy.random_bytes(NONCE_SIZE)
            self._send(VehicleHello(nonce=greeting))
        self._greeting = greeting

    def _on_discarded_record(self, msg: Record, now: float) -> Step:
        return [], _T.AWAIT_STANDARD

    def _on_standard_hello(self, msg: StandardHello, now: float) -> Step:
        eph_p = PublicKey(msg.ephemeral)
        eph = self._entropy.new_private_key()
        nonce = self._entropy.random_bytes(NONCE_SIZE)
        th1 = crypto.sha256(
            _STANDARD
            + self._greeting
            + msg.ephemeral
            + msg.nonce
            + eph.public_bytes
            + nonce
            + self._vehicle_id
        )
        hs_v2p, self._hs_p2v, self._secrets = _standard_keys(eph.exchange(eph_p), th1)
        signature = self._vehicle_key.sign(_VEHICLE_SIG + th1)
        self._sealed_v = Aead(hs_v2p).seal(_ZERO_NONCE, signature, th1)
        self._send(VehicleAuth(ephemeral=eph.public_bytes, nonce=nonce, sealed=self._sealed_v))
        self._th1 = th1
        return [], _T.SENT_VEHICLE_AUTH

    def _on_phone_auth(self, msg: PhoneAuth, now: float) -> Step:
        th1 = self._th1
        proof = Aead(self._hs_p2v).open(_ZERO_NONCE, msg.sealed, th1)
        if len(proof) < _PROOF_SIZE:
            raise MalformedMessage("PhoneAuth must seal a key id and a signature")
        endpoint_id, signature = proof[:KEY_ID_SIZE], proof[KEY_ID_SIZE:_PROOF_SIZE]
        events: list[Event] = []
        phone_key = self._directory.endpoint_key(endpoint_id)
        if phone_key is None:
            if len(proof) == _PROOF_SIZE:
                raise AuthenticationFailed(
                    "this phone has no valid key for this car", code=WireCode.UNKNOWN_KEY
                )
            # First use of a shared key: the credential travels behind the proof (§6.2, §9).
            chain = credentials.verify_chain(
                credentials.read_credential(proof[_PROOF_SIZE:]),
                vehicle_id=self._vehicle_id,
                owner_key=self._directory.owner_key,
                is_revoked=self._directory.is_revoked,
                now=now,
                max_depth=self._directory.max_depth,
            )
            if chain.leaf.grantee.key_id != endpoint_id:
                raise GrantError(
                    "the credential was given to another key", code=WireCode.GRANT_KEY_MISMATCH
                )
            phone_key = chain.leaf.grantee
            phone_key.verify(signature, _PHONE_SIG + th1 + endpoint_id)
            events.append(CredentialAccepted(chain=chain))
        else:
            phone_key.verify(signature, _PHONE_SIG + th1 + endpoint_id)
        assert self._secrets is not None
        transcript = crypto.sha256(th1 + self._sealed_v + msg.sealed)
        self._send(Finished(mac=crypto.mac(self._secrets.finished, transcript)))
        events += self._established(endpoint_id, self._secrets, fast=False)
        return events, _T.ESTABLISHED

    def _on_fast_proof(self, msg: FastProof, now: float) -> Step:
        th = fast_transcript(self._greeting, msg.nonce, self._vehicle_id)
        message = _FAST_PHONE + th
        for endpoint_id, key in self._directory.persistent_keys():
            if crypto.equal(crypto.mac(key, message), msg.cryptogram):
                if self._directory.endpoint_key(endpoint_id) is None:
                    break  # a revoked phone's leftover key must never open the car
                secrets = _SessionSecrets.derive(key, th, _FAST_SESSION)
                self._send(Finished(mac=crypto.mac(secrets.finished, th + msg.cryptogram)))
                return self._established(endpoint_id, secrets, fast=True), _T.ESTABLISHED
        self._send(Fallback())
        return [FastFallback()], _T.AWAIT_STANDARD

    def _established(
        self, endpoint_id: bytes, secrets: _SessionSecrets, *, fast: bool
    ) -> list[Event]:
        session = VehicleSession(secrets.vehicle_keys(), endpoint_id=endpoint_id, fast=fast)
        return [
            PersistentKeyChanged(endpoint_id=endpoint_id, key=secrets.persistent),
            Established(session=session, endpoint_id=endpoint_id, fast=fast),
        ]

    TRANSITIONS: ClassVar = {
        (_T.START, StandardHello): rule(_on_standard_hello, _T.SENT_VEHICLE_AUTH),
        (_T.START, FastProof): rule(_on_fast_proof, _T.ESTABLISHED, _T.AWAIT_STANDARD),
        (_T.SENT_VEHICLE_AUTH, PhoneAuth): rule(_on_phone_auth, _T.ESTABLISHED),
        (_T.AWAIT_STANDARD, StandardHello): rule(_on_standard_hello, _T.SENT_VEHICLE_AUTH),
        # Early commands the phone sent behind a fast proof that did not match: discarded.
        (_T.AWAIT_STANDARD, Record): rule(_on_discarded_record, _T.AWAIT_STANDARD),
    }
