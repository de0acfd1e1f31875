"""A corrupted grant file changes nothing (issue 19, item 1): accept checks the whole bundle
before it binds the requested key, so the genuine file still works; a key can be removed."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from tether.link import bundles
from tether.phone import sharing
from tether.phone.wallet import PhoneWallet
from tether.protocol.credentials import Limits
from tether.protocol.crypto import SystemEntropy

from .procs import CLI, tether


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
    request = bundles.read_request((tmp_path / "req").read_bytes())
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


def test_links_survive_copy_and_paste_and_qr_codes_fit(tmp_path: Path) -> None:
    """Issue 19, item 4: a key request as a link and a QR code, a grant link that a terminal or a
    mail client wrapped into lines, an invitation pasted where a grant was expected."""
    owner = PhoneWallet.create(tmp_path / "ada", name="Ada", passphrase="correct horse battery")
    owner.add_car(
        name="car",
        vehicle_key=SystemEntropy().new_private_key().public_key,
        vehicle_name="Ada's car",
        address="tcp://127.0.0.1:7300",
        endpoint_key=SystemEntropy().new_private_key(),
        role="owner",
        now=time.time(),
    )
    owner.close()
    friend, ada = str(tmp_path / "bea"), str(tmp_path / "ada")
    tether("phone", "init", "--dir", friend, "--name", "Bea")
    made = tether("phone", "key-request", "--dir", friend, "--qr-file", str(tmp_path / "r.png"))
    [request_link] = [line[6:] for line in made.stdout.splitlines() if line.startswith("Link: ")]
    assert request_link.startswith("tether://key-request/")
    assert (tmp_path / "r.png").read_bytes().startswith(b"\x89PNG")
    shared = subprocess.run(
        [*CLI, "phone", "share", "--dir", ada, "--request", request_link,
         "--until", "2099-01-01T00:00", "--out", str(tmp_path / "g")],
        capture_output=True, text=True, check=True, timeout=60,
        env={**os.environ, "COLUMNS": "80", "TETHER_PASSPHRASE": "correct horse battery"},
    )  # fmt: skip
    lines = shared.stdout.splitlines()
    # In an 80-column terminal nothing but the link is wider (a too-wide QR is not printed).
    assert all(len(line) <= 80 for line in lines if not line.startswith("Link: ")), lines
    [grant_link] = [line[6:] for line in lines if line.startswith("Link: ")]
    wrapped = "\n".join(grant_link[i : i + 76] for i in range(0, len(grant_link), 76))
    tether("phone", "accept", "--dir", friend, wrapped)
    invitation = tether("phone", "accept", "--dir", friend, "tether://invite/abc#x", check=False)
    assert invitation.returncode == 2 and "request-key" in invitation.stderr
