"""`tether demo` through the real command line: every step behaves and the exit code says so."""

from __future__ import annotations

import subprocess
import sys

from rich.console import Console

from tether.cli.demo import run_demo


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tether.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_demo_command_succeeds_and_narrates() -> None:
    result = run_cli("demo", "--seed", "ci")
    assert result.returncode == 0, result.stdout + result.stderr
    out = " ".join(result.stdout.split())  # rich wraps at the terminal width
    assert "pairing code" in out
    assert "Ada unlocks (standard" in out and "done (standard transaction)" in out
    assert "done (fast transaction)" in out
    assert "fast_not_allowed" in out
    assert "An eavesdropper replays Ada's first unlock: refused" in out
    assert "Bea unlocks (first use" in out
    assert "no_right" in out and "unknown_key" in out and "grant_revoked" in out
    assert "hash chain intact" in out
    assert "head unit fills: contacts Charles Babbage" in out and "head unit empties" in out
    assert "unlocked by itself at" in out and "locked by itself once she was beyond 5 m" in out
    assert "Thieves relay Ada's phone from 30 m to the door: refused" in out
    assert "every step behaved as expected" in out
    assert "✗" not in out


def test_demo_is_reproducible_with_a_seed() -> None:
    outputs = []
    for _ in range(2):
        console = Console(record=True, width=200)
        assert run_demo(seed=b"same", console=console)
        text = console.export_text()
        outputs.append(
            [line.split("shows")[0] for line in text.splitlines() if "pairing code" in line]
        )
    assert outputs[0] == outputs[1]


def test_usage_errors_exit_2_without_traceback() -> None:
    result = run_cli("demo", "--no-such-option")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_version_and_bare_command() -> None:
    assert run_cli("--version").stdout.strip().startswith("tether ")
    bare = run_cli()
    assert bare.returncode == 2
    assert "demo" in bare.stdout
