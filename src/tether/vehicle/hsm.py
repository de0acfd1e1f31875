"""The car's identity key in a PKCS#11 token (an HSM, a TPM's PKCS#11 front, SoftHSM2 in tests).

The key is made inside the token as sensitive and not extractable; ``vehicle.db`` keeps only the
public key and where to find the private one (module, token label, key label). The token's user
PIN comes from ``TETHER_HSM_PIN`` and is never stored. Signing is ECDSA P-256 over the SHA-256 of
the data (``CKM_ECDSA`` on the digest), which yields the same 64-byte r||s as a key in memory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
from typing import Any

from tether.errors import StorageError, UsageError
from tether.protocol.crypto import PublicKey

PIN_VARIABLE = "TETHER_HSM_PIN"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TokenKey:
    """Where a key lives: the PKCS#11 module (a .so), the token's label, the key's label."""

    module: str
    token: str
    label: str = "tether-car"


def _pin() -> str:
    pin = os.environ.get(PIN_VARIABLE, "")
    if not pin:
        raise UsageError(f"the car's key is in a PKCS#11 token: set {PIN_VARIABLE} to its user PIN")
    return pin


def _session(ref: TokenKey, *, rw: bool = False) -> Any:
    try:
        import pkcs11
    except ImportError as exc:  # pragma: no cover - the hsm extra is part of the lock file
        raise UsageError("PKCS#11 needs the hsm extra (python-pkcs11)") from exc
    try:
        token = pkcs11.lib(ref.module).get_token(token_label=ref.token)
        return token.open(rw=rw, user_pin=_pin())
    except UsageError:
        raise
    except Exception as exc:  # the module raises many kinds: no library, no token, wrong PIN
        raise StorageError(
            f"cannot open the PKCS#11 token {ref.token!r} with {ref.module}: {exc!r}"
        ) from exc


def _point(public: Any) -> bytes:
    from asn1crypto.core import OctetString
    from pkcs11 import Attribute

    point: bytes = OctetString.load(public[Attribute.EC_POINT]).native
    return point


def create(ref: TokenKey) -> PublicKey:
    """Make the car's identity key inside the token; refuses a label already in use."""
    from pkcs11 import Attribute, KeyType, ObjectClass
    from pkcs11.util.ec import encode_named_curve_parameters

    with _session(ref, rw=True) as session:
        if list(
            session.get_objects(
                {Attribute.LABEL: ref.label, Attribute.CLASS: ObjectClass.PRIVATE_KEY}
            )
        ):
            raise UsageError(f"the token {ref.token!r} already holds a key labelled {ref.label!r}")
        params = session.create_domain_parameters(
            KeyType.EC,
            {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
            local=True,
        )
        public, _ = params.generate_keypair(
            store=True,
            label=ref.label,
            private_template={
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
                Attribute.SIGN: True,
            },
        )
        return PublicKey(_point(public))


class TokenSigner:
    """A :class:`~tether.protocol.crypto.Signer` whose private key never leaves the token.

    The token is opened on first use (:meth:`open`), so commands that never sign (status,
    audit, a pairing code) need no PIN; the agent opens it when it starts.
    """

    def __init__(self, ref: TokenKey, public_key: PublicKey) -> None:
        self._ref = ref
        self._public = public_key
        self._session: Any = None
        self._key: Any = None
        self._lock = threading.Lock()  # one PKCS#11 session: one operation at a time

    def open(self) -> None:
        """Open the token and find this car's key in it (checked against the stored public key)."""
        from pkcs11 import KeyType, ObjectClass

        if self._session is not None:
            return
        session = _session(self._ref)
        label = self._ref.label
        try:
            key = session.get_key(
                object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.EC, label=label
            )
            public = session.get_key(
                object_class=ObjectClass.PUBLIC_KEY, key_type=KeyType.EC, label=label
            )
            found = _point(public)
        except Exception as exc:
            session.close()
            raise StorageError(
                f"no key {label!r} in the token {self._ref.token!r}: {exc!r}"
            ) from exc
        if found != self._public.encoded:
            session.close()
            raise StorageError(f"the token's key {label!r} is not this car's identity")
        self._session, self._key = session, key

    @property
    def public_key(self) -> PublicKey:
        return self._public

    def sign(self, data: bytes) -> bytes:
        from pkcs11 import Mechanism

        with self._lock:
            self.open()
            digest = hashlib.sha256(data).digest()
            signature: bytes = self._key.sign(digest, mechanism=Mechanism.ECDSA)
        return signature

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = self._key = None
