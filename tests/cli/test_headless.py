"""Set-up on a headless machine with no OS keyring (issue 19, item 2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CLI = [sys.executable, "-m", "tether.cli"]


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
        env={
            **base,
            "COLUMNS": "200",
            "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
            **env,
        },
    )


def test_a_failed_init_leaves_nothing_and_says_what_to_do(tmp_path: Path) -> None:
    failed = run("phone", "init", "--dir", str(tmp_path / "phone"))
    assert failed.returncode == 2
    assert "TETHER_PASSPHRASE" in failed.stderr and "Traceback" not in failed.stderr
    assert not (tmp_path / "phone").exists()


def test_init_open_and_change_the_passphrase(tmp_path: Path) -> None:
    phone = str(tmp_path / "phone")
    assert run("phone", "init", "--dir", phone, TETHER_PASSPHRASE="first one").returncode == 0
    assert run("phone", "keys", "--dir", phone, TETHER_PASSPHRASE="first one").returncode == 0
    wrong = run("phone", "keys", "--dir", phone, TETHER_PASSPHRASE="not it")
    assert wrong.returncode == 2 and "wrong passphrase" in wrong.stderr
    changed = run(
        "phone",
        "passphrase",
        "--dir",
        phone,
        TETHER_PASSPHRASE="first one",
        TETHER_NEW_PASSPHRASE="second one",
    )
    assert changed.returncode == 0, changed.stderr
    assert run("phone", "keys", "--dir", phone, TETHER_PASSPHRASE="second one").returncode == 0
    assert run("phone", "keys", "--dir", phone, TETHER_PASSPHRASE="first one").returncode == 2
    assert (tmp_path / "phone" / "phone.db").stat().st_mode & 0o077 == 0
    assert (tmp_path / "phone").stat().st_mode & 0o077 == 0
