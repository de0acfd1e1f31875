"""Set up once, not on every command (issue 19, item 7): default directories per role, a config
file, shell completion, `vehicle run --help` with its defaults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CLI = [sys.executable, "-m", "tether.cli"]


def run(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TETHER_", "XDG_"))}
    env |= {
        "XDG_DATA_HOME": str(tmp / "data"),
        "XDG_CONFIG_HOME": str(tmp / "config"),
        "TETHER_PASSPHRASE": "defaults",
        "COLUMNS": "200",
    }
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=60, check=False, env=env,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_each_role_has_a_default_directory(tmp_path: Path) -> None:
    assert run(tmp_path, "phone", "init").returncode == 0
    assert (tmp_path / "data" / "tether" / "phone" / "phone.db").exists()
    assert run(tmp_path, "phone", "keys").returncode == 0
    assert run(tmp_path, "vehicle", "init", "--name", "Mine").returncode == 0
    assert (tmp_path / "data" / "tether" / "car" / "vehicle.db").exists()
    assert run(tmp_path, "vehicle", "status").returncode == 0


def test_the_config_file_names_the_server_and_directories(tmp_path: Path) -> None:
    missing = run(tmp_path, "phone", "telemetry")
    assert missing.returncode == 2 and "config.toml" in missing.stderr
    (tmp_path / "config" / "tether").mkdir(parents=True)
    (tmp_path / "config" / "tether" / "config.toml").write_text(
        f'server = "http://127.0.0.1:1"\nphone_dir = "{tmp_path / "elsewhere"}"\n'
    )
    assert run(tmp_path, "phone", "init").returncode == 0
    assert (tmp_path / "elsewhere" / "phone.db").exists()
    no_key = run(tmp_path, "phone", "telemetry")  # the server came from the file: no key yet
    assert no_key.returncode == 2 and "no car key" in no_key.stderr


def test_completion_and_run_help(tmp_path: Path) -> None:
    assert "--install-completion" in run(tmp_path, "--help").stdout
    shown = run(tmp_path, "vehicle", "run", "--help").stdout
    assert "tcp://127.0.0.1:7300" in shown and "default" in shown
