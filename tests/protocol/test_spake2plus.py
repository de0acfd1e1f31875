"""SPAKE2+ against RFC 9383 appendix C, and what each side refuses."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.errors import PairingError
from tether.protocol import spake2plus
from tether.protocol.spake2plus import ORDER, Ids, Prover, ProverSecret, Verifier

# RFC 9383, Appendix C: SPAKE2+-P256-SHA256-HKDF-SHA256-HMAC-SHA256.
RFC_IDS = Ids(
    context=b"SPAKE2+-P256-SHA256-HKDF-SHA256-HMAC-SHA256 Test Vectors",
    prover=b"client",
    verifier=b"server",
)
W0 = 0xBB8E1BBCF3C48F62C08DB243652AE55D3E5586053FCA77102994F23AD95491B3
W1 = 0x7E945F34D78785B8A3EF44D0DF5A1A97D6B3B460409A345CA7830387A74B1DBA
L = bytes.fromhex(
    "04eb7c9db3d9a9eb1f8adab81b5794c1f13ae3e225efbe91ea487425854c7fc00f00bfed"
    "cbd09b2400142d40a14f2064ef31dfaa903b91d1faea7093d835966efd"
)
X = 0xD1232C8E8693D02368976C174E2088851B8365D0D79A9EEE709C6A05A2FAD539
Y = 0x717A72348A182085109C8D3917D6C43D59B224DC6A7FC4F0483232FA6516D8B3
SHARE_P = bytes.fromhex(
    "04ef3bd051bf78a2234ec0df197f7828060fe9856503579bb1733009042c15c0c1de1277"
    "27f418b5966afadfdd95a6e4591d171056b333dab97a79c7193e341727"
)
SHARE_V = bytes.fromhex(
    "04c0f65da0d11927bdf5d560c69e1d7d939a05b0e88291887d679fcadea75810fb5cc1ca"
    "7494db39e82ff2f50665255d76173e09986ab46742c798a9a68437b048"
)
K_MAIN = bytes.fromhex("4c59e1ccf2cfb961aa31bd9434478a1089b56cd11542f53d3576fb6c2a438a29")
CONFIRM_P = bytes.fromhex("926cc713504b9b4d76c9162ded04b5493e89109f6d89462cd33adc46fda27527")
CONFIRM_V = bytes.fromhex("9747bcc4f8fe9f63defee53ac9b07876d907d55047e6ff2def2e7529089d3e68")
K_SHARED = bytes.fromhex("0c5f8ccd1413423a54f6c1fb26ff01534a87f893779c6e68666d772bfd91f3e7")


def test_both_sides_reproduce_rfc_9383_appendix_c() -> None:
    secret = ProverSecret(w0=W0, w1=W1)
    assert secret.verifier().L == L
    prover = Prover(secret, RFC_IDS, X)
    verifier = Verifier(secret.verifier(), RFC_IDS, Y)
    assert prover.share == SHARE_P and verifier.share == SHARE_V
    mine, theirs = prover.finish(verifier.share), verifier.finish(prover.share)
    assert mine == theirs
    assert mine.k_main == K_MAIN
    assert (mine.confirm_p, mine.confirm_v, mine.shared_key) == (CONFIRM_P, CONFIRM_V, K_SHARED)


def test_the_group_elements_are_rfc_9382s() -> None:
    # M and N decompress to points of P-256 and are distinct from the generator and each other.
    m, n = spake2plus.encode(spake2plus.M), spake2plus.encode(spake2plus.N)
    assert m[1:33] == spake2plus.M_COMPRESSED[1:] and n[1:33] == spake2plus.N_COMPRESSED[1:]
    assert m != n


@settings(max_examples=10, deadline=None)
@given(
    st.integers(min_value=1, max_value=ORDER - 1),
    st.integers(min_value=1, max_value=ORDER - 1),
    st.integers(min_value=0, max_value=ORDER - 1),
)
def test_a_different_w0_gives_different_confirmations(x: int, y: int, other: int) -> None:
    secret = ProverSecret(w0=W0, w1=W1)
    wrong = ProverSecret(w0=other, w1=W1) if other != W0 else ProverSecret(w0=W0 ^ 1, w1=W1)
    prover = Prover(wrong, RFC_IDS, x)
    verifier = Verifier(secret.verifier(), RFC_IDS, y)
    mine, theirs = prover.finish(verifier.share), verifier.finish(prover.share)
    assert mine.confirm_p != theirs.confirm_p and mine.confirm_v != theirs.confirm_v


@pytest.mark.parametrize(
    "share",
    [
        b"\x04" + b"\x01" * 64,  # not on the curve
        b"\x00",  # the identity's encoding
        b"\x05" + SHARE_P[1:],  # not SEC1
        SHARE_P[:40],  # truncated
    ],
)
def test_a_share_that_is_not_a_point_is_bad_pake_message(share: bytes) -> None:
    verifier = Verifier(ProverSecret(w0=W0, w1=W1).verifier(), RFC_IDS, Y)
    with pytest.raises(PairingError) as info:
        verifier.finish(share)
    assert info.value.code == "bad_pake_message"
    prover = Prover(ProverSecret(w0=W0, w1=W1), RFC_IDS, X)
    with pytest.raises(PairingError):
        prover.finish(share)


def test_the_guards_refuse_what_the_rfc_excludes() -> None:
    with pytest.raises(ValueError, match="80 bytes"):
        spake2plus.split_w(bytes(79))
    secret = ProverSecret(w0=W0, w1=W1)
    for bad in (0, ORDER):
        with pytest.raises(ValueError, match="scalar"):
            Prover(secret, RFC_IDS, bad)
        with pytest.raises(ValueError, match="scalar"):
            Verifier(secret.verifier(), RFC_IDS, bad)
    verifier = Verifier(secret.verifier(), RFC_IDS, Y)
    with pytest.raises(PairingError) as reflected:
        verifier.finish(verifier.share)
    assert reflected.value.code == "bad_pake_message"
    with pytest.raises(PairingError) as identity:
        spake2plus.encode(spake2plus._G * ORDER)  # the point at infinity has no SEC1 encoding
    assert identity.value.code == "bad_pake_message"
    with pytest.raises(PairingError):
        spake2plus._point(b"\x00")  # the identity's own encoding does not decode
