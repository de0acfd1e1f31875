"""HTTP Message Signatures (RFC 9421) with device keys, and Content-Digest (RFC 9530): pure.

Every request to the server is signed by a P-256 key the server knows (a car's identity key, a
phone's endpoint key, a fleet key) with ``alg="ecdsa-p256-sha256"`` over the method, path, query
and body digest, with ``created``, ``keyid`` (the key id in hex), a random ``nonce`` and
``tag="tether"``. No password or bearer token ever crosses the wire; a replayed request is refused
by its nonce, a stale one by ``created``.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re

from tether.errors import AuthenticationFailed, SignatureRefused
from tether.protocol.crypto import PublicKey, Signer

ALG = "ecdsa-p256-sha256"
TAG = "tether"
LABEL = "sig1"
COMPONENTS = ('"@method"', '"@path"', '"@query"', '"content-digest"')
MAX_SKEW = 300  # seconds a signature may be old (or early)
_INPUT = re.compile(
    r'^sig1=\("@method" "@path" "@query" "content-digest"\)'
    r";created=(?P<created>\d{1,12})"
    r';keyid="(?P<keyid>[0-9a-f]{32})"'
    r';alg="ecdsa-p256-sha256"'
    r';nonce="(?P<nonce>[A-Za-z0-9_-]{16,64})"'
    r';tag="tether"$'
)
_SIGNATURE = re.compile(r"^sig1=:(?P<sig>[A-Za-z0-9+/]{86}==):$")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SignedRequest:
    """What a verified request's signature said."""

    key_id: bytes
    created: int
    nonce: str


def content_digest(body: bytes) -> str:
    """The RFC 9530 Content-Digest field value for ``body`` (SHA-256)."""
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"


def _params(created: int, keyid: str, nonce: str) -> str:
    return (
        f'({" ".join(COMPONENTS)});created={created};keyid="{keyid}";alg="{ALG}"'
        f';nonce="{nonce}";tag="{TAG}"'
    )


def signature_base(method: str, path: str, query: str, digest: str, params: str) -> bytes:
    """The RFC 9421 §2.5 signature base for our fixed component list."""
    lines = [
        f'"@method": {method.upper()}',
        f'"@path": {path}',
        f'"@query": ?{query}',
        f'"content-digest": {digest}',
        f'"@signature-params": {params}',
    ]
    return "\n".join(lines).encode()


def sign_request(
    key: Signer, *, method: str, path: str, query: str, body: bytes, created: int, nonce: str
) -> dict[str, str]:
    """The headers that sign one request: Content-Digest, Signature-Input and Signature."""
    digest = content_digest(body)
    params = _params(created, key.public_key.key_id.hex(), nonce)
    signature = key.sign(signature_base(method, path, query, digest, params))
    return {
        "Content-Digest": digest,
        "Signature-Input": f"{LABEL}={params}",
        "Signature": f"{LABEL}=:{base64.b64encode(signature).decode()}:",
    }


def read_signature(headers: dict[str, str]) -> tuple[SignedRequest, str, bytes]:
    """Parse the signature headers strictly: (what they claim, the params, the signature)."""
    sig_input = headers.get("signature-input", "")
    sig = headers.get("signature", "")
    if not sig_input or not sig:
        raise SignatureRefused("this request is not signed (Signature and Signature-Input)")
    m = _INPUT.match(sig_input)
    s = _SIGNATURE.match(sig)
    if m is None or s is None:
        raise SignatureRefused("the request's signature headers are malformed")
    claimed = SignedRequest(
        key_id=bytes.fromhex(m["keyid"]), created=int(m["created"]), nonce=m["nonce"]
    )
    return claimed, sig_input[len(LABEL) + 1 :], base64.b64decode(s["sig"])


def verify_request(
    key: PublicKey,
    *,
    method: str,
    path: str,
    query: str,
    body: bytes,
    headers: dict[str, str],
    now: float,
) -> SignedRequest:
    """Check one request against ``key``: digest, freshness and signature (nonces: the caller)."""
    claimed, params, signature = read_signature(headers)
    if claimed.key_id != key.key_id:
        raise SignatureRefused("the request names another key than the one checked")
    if abs(now - claimed.created) > MAX_SKEW:
        raise SignatureRefused("the request's signature is too old or from the future (clock?)")
    digest = headers.get("content-digest", "")
    if digest != content_digest(body):
        raise SignatureRefused("the request's body does not match its Content-Digest")
    try:
        key.verify(signature, signature_base(method, path, query, digest, params))
    except AuthenticationFailed:
        raise SignatureRefused("the request's signature does not verify") from None
    return claimed
