"""The car's identity key in a PKCS#11 token (SoftHSM2): never in vehicle.db, and the car works.

SoftHSM2 is Debian's `softhsm2` (installed by .ci/run); the token lives in a temporary directory.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.integration.procs import CLI, Agent, tether, tether_json

MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
PIN = "4711"
pytestmark = pytest.mark.skipif(
    not MODULE.exists() or shutil.which("softhsm2-util") is None,
    reason="needs Debian's softhsm2 (.ci/run installs it)",
)


@pytest.fixture
def token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "tokens").mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tmp_path / 'tokens'}\nobjectstore.backend = file\n")
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    subprocess.run(
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            "car",
            "--pin",
            PIN,
            "--so-pin",
            "56781234",
        ],
        check=True,
        capture_output=True,
    )
    monkeypatch.setenv("TETHER_HSM_PIN", PIN)
    return "car"


def test_a_car_whose_key_lives_in_a_token_pairs_and_opens(tmp_path: Path, token: str) -> None:
    car, phone = tmp_path / "car", tmp_path / "phone"
    made = tether(
        "vehicle",
        "init",
        "--dir",
        str(car),
        "--pkcs11-module",
        str(MODULE),
        "--pkcs11-token",
        token,
    )
    assert "key in the token" in made.stdout
    with sqlite3.connect(car / "vehicle.db") as db:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    assert "vehicle_scalar" not in meta and len(meta["vehicle_public"]) == 65

    code = tether_json("vehicle", "pairing-code", "--dir", str(car))["code"]
    agent = Agent(car)
    try:
        tether("phone", "init", "--dir", str(phone))
        tether("phone", "pair", "--dir", str(phone), "--vehicle", agent.address, "--code", code)
        assert tether_json("phone", "unlock", "--dir", str(phone))["ok"]  # signed in the token
        assert tether_json("phone", "lock", "--dir", str(phone))["fast"]
    finally:
        agent.stop()
    # Without the PIN: the status still shows (nothing signs), the agent refuses to start.
    env = {k: v for k, v in os.environ.items() if k != "TETHER_HSM_PIN"}
    status = subprocess.run(
        [*CLI, "vehicle", "status", "--dir", str(car), "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert status.returncode == 0, status.stderr
    refused = subprocess.run(
        [*CLI, "vehicle", "run", "--dir", str(car), "--listen", "tcp://127.0.0.1:0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert refused.returncode == 2 and "TETHER_HSM_PIN" in refused.stderr

    again = tether(
        "vehicle",
        "init",
        "--dir",
        str(tmp_path / "car2"),
        "--pkcs11-module",
        str(MODULE),
        "--pkcs11-token",
        token,
        check=False,
    )
    assert again.returncode == 2 and "already holds a key" in again.stderr
    assert not (tmp_path / "car2" / "vehicle.db").exists()


def test_the_tokens_key_is_not_extractable(tmp_path: Path, token: str) -> None:
    from tether.vehicle.hsm import TokenKey, TokenSigner, create

    ref = TokenKey(module=str(MODULE), token=token, label="probe")
    public = create(ref)
    signer = TokenSigner(ref, public)
    try:
        public.verify(signer.sign(b"hello"), b"hello")  # r||s, as a key in memory
        from pkcs11 import Attribute

        assert signer._key[Attribute.EXTRACTABLE] is False
        assert signer._key[Attribute.SENSITIVE] is True
    finally:
        signer.close()
