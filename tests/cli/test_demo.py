"""`tether demo` through the real command line: the scripted story behaves and says so."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys


def run_cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tether.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={"COLUMNS": "220", "PATH": "/usr/bin:/bin"},
    )


def test_demo_script_plays_the_whole_story_even_when_8080_is_busy() -> None:
    with contextlib.ExitStack() as stack:
        busy = stack.enter_context(socket.socket())
        with contextlib.suppress(OSError):  # taken already by something else: busy all the same
            busy.bind(("127.0.0.1", 8080))
            busy.listen()
        result = run_cli("demo", "--script")
    assert result.returncode == 0, result.stdout + result.stderr
    out = " ".join(result.stdout.split())  # rich wraps at the terminal width
    assert "console at http://127.0.0.1:" in out and "pairing code" in out
    assert "Ada: pair — paired with code" in out
    assert "Ada: unlock — done (standard)" in out and "Ada: lock — done (fast)" in out
    assert "Attacker: replay a recorded unlock — refused" in out
    assert "Bea: start — refused (no_right" in out
    assert "Attacker: tamper a grant — refused by the car (grant_bad_signature)" in out
    assert "revocation" in out and "applied; the car signed a receipt" in out
    assert "Bea: unlock — refused by the car (unknown_key)" in out
    assert "remote lock — done through the cloud" in out
    assert "unlocked by itself at" in out and "locked by itself" in out
    assert "Attacker: relay from 30 m — refused" in out
    assert "every step behaved as expected" in out


def test_usage_errors_exit_2_without_traceback() -> None:
    result = run_cli("demo", "--no-such-option")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_version_and_bare_command() -> None:
    assert run_cli("--version").stdout.strip().startswith("tether ")
    bare = run_cli()
    assert bare.returncode == 2
    assert "demo" in bare.stdout
