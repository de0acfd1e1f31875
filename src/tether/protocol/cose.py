"""COSE_Sign1 with ES256 (RFC 9052): the one envelope of every signed tether object, decoded once.

Grants, revocations, remote commands, results, receipts and states are all a tagged COSE_Sign1
whose protected header is exactly ``{1: -7}`` (ES256), whose unprotected header names the
signer's key id (``4: kid``) and whose payload is one declared object (:mod:`codec` shapes).
:func:`open_sign1` checks the envelope strictly and keeps the parts, so the signature is verified
on the same decoded value the caller goes on to use: nothing is parsed twice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import cbor2

from tether.errors import MalformedMessage
from tether.protocol.crypto import PublicKey, Signer

COSE_SIGN1_TAG = 18
ES256 = -7
KID = 4
#: No signed object comes close (a grant chain of eight is under 4 KiB).
MAX_SIGNED_SIZE = 8192
_PROTECTED = cbor2.dumps({1: ES256}, canonical=True)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Sign1:
    """One decoded COSE_Sign1: its parts as sent, not yet verified."""

    protected: bytes
    kid: bytes
    payload: bytes
    signature: bytes
    raw: bytes

    def verify(self, key: PublicKey) -> None:
        """Check the signature under ``key``; AuthenticationFailed if it does not verify."""
        key.verify(self.signature, sig_structure(self.protected, self.payload))


class Signed:
    """Base of every decoded signed object: it keeps its COSE_Sign1 as sent (``signed``)."""

    __slots__ = ()
    signed: Sign1

    @property
    def raw(self) -> bytes:
        """The object's bytes exactly as signed and sent."""
        return self.signed.raw


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    """The bytes an ES256 COSE_Sign1 signature covers (RFC 9052 §4.4, empty external AAD)."""
    return cbor2.dumps(["Signature1", protected, b"", payload], canonical=True)


def sign1(signer: Signer, payload: bytes) -> bytes:
    """A tagged COSE_Sign1 (ES256) over ``payload``, naming the signer's key id as ``kid``."""
    signature = signer.sign(sig_structure(_PROTECTED, payload))
    message = [_PROTECTED, {KID: signer.public_key.key_id}, payload, signature]
    return cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, message), canonical=True)


def open_sign1(data: bytes, what: str) -> Sign1:
    """Decode a COSE_Sign1 with ES256 strictly; MalformedMessage says what is wrong."""
    if type(data) is not bytes or len(data) > MAX_SIGNED_SIZE:
        raise MalformedMessage(f"{what} is not a COSE_Sign1 message")
    try:
        obj = cbor2.loads(data)
    except Exception as exc:  # any garbage is ours to refuse
        raise MalformedMessage(f"{what} is not valid CBOR") from exc
    if not isinstance(obj, cbor2.CBORTag) or obj.tag != COSE_SIGN1_TAG:
        raise MalformedMessage(f"{what} is not a COSE_Sign1 message")
    parts = list(obj.value) if isinstance(obj.value, list | tuple) else None
    if parts is None or len(parts) != 4:
        raise MalformedMessage(f"{what} is not a COSE_Sign1 message")
    protected, unprotected, payload, signature = parts
    if (
        type(protected) is not bytes
        or type(payload) is not bytes
        or type(signature) is not bytes
        or not isinstance(unprotected, Mapping)
        or set(unprotected) != {KID}
        or type(unprotected[KID]) is not bytes
    ):
        raise MalformedMessage(f"{what} has malformed COSE fields")
    if protected != _PROTECTED:
        raise MalformedMessage(f"{what} must be signed with ES256")
    return Sign1(
        protected=protected, kid=unprotected[KID], payload=payload, signature=signature, raw=data
    )
