"""A corrupted grant file changes nothing (issue 19, item 1): accept checks the whole bundle
before it binds the requested key, so the genuine file still works; a key can be removed."""

from __future__ import annotations

import time
from pathlib import Path

from tether.phone import sharing
from tether.phone.wallet import PhoneWallet
from tether.protocol.credentials import Limits
from tether.protocol.crypto import SystemEntropy

from .procs import tether


def test_a_flipped_byte_is_refused_and_the_genuine_grant_still_works(tmp_path: Path) -> None:
    owner = PhoneWallet.create(tmp_path / "ada", name="Ada", passphrase="a")
    car = owner.add_car(
        name="car",
        vehicle_key=SystemEntropy().new_private_key().public_key,
        vehicle_name="Ada's car",
        address="tcp://127.0.0.1:7300",
        endpoint_key=SystemEntropy().new_private_key(),
        role="owner",
        now=time.time(),
    )
    friend = str(tmp_path / "bea")
    tether("phone", "init", "--dir", friend, "--name", "Bea")
    tether("phone", "key-request", "--dir", friend, "--out", str(tmp_path / "req"), "--name", "Bea")
    request = sharing.read_request((tmp_path / "req").read_bytes())
    now = int(time.time())
    bundle, _ = sharing.grant(
        car,
        request,
        rights=frozenset({"unlock"}),
        not_before=now - 60,
        expires=now + 3600,
        limits=Limits(),
        now=now,
    )
    owner.close()
    genuine = bundle.encode()
    chain_at = genuine.index(bundle.chain[0])
    for offset in (len(bundle.chain[0]) - 5, len(bundle.chain[0]) // 2):  # signature, payload
        bad = bytearray(genuine)
        bad[chain_at + offset] ^= 0x01
        (tmp_path / "bad.grant").write_bytes(bytes(bad))
        refused = tether(
            "phone", "accept", "--dir", friend, str(tmp_path / "bad.grant"), check=False
        )
        assert refused.returncode == 2, refused.stdout
        assert "Accepted" not in refused.stdout and "Traceback" not in refused.stderr
    (tmp_path / "good.grant").write_bytes(genuine)
    tether("phone", "accept", "--dir", friend, str(tmp_path / "good.grant"))
    keys = tether("phone", "keys", "--dir", friend, "--json")
    assert '"car"' in keys.stdout and "unlock" in keys.stdout
    tether("phone", "keys", "remove", "--dir", friend, "--car", "Ada's car")
    assert '"keys": []' in tether("phone", "keys", "--dir", friend, "--json").stdout
