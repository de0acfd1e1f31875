"""Helpers for tests that run tether as real processes talking over loopback TCP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CLI = [sys.executable, "-m", "tether.cli"]


def tether(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "COLUMNS": "200", "TETHER_PASSPHRASE": "correct horse battery"},
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"tether {' '.join(args)} -> {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
    return result


def tether_json(*args: str) -> Any:
    return json.loads(tether(*args, "--json").stdout)


class Agent:
    """A `tether vehicle run` process on a free loopback port."""

    def __init__(self, directory: Path, *extra: str) -> None:
        self.directory = directory
        self.proc = subprocess.Popen(
            [
                *CLI,
                "vehicle",
                "run",
                "--dir",
                str(directory),
                "--listen",
                "tcp://127.0.0.1:0",
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("ready "):
            self.proc.kill()
            raise AssertionError(
                f"agent did not start: {line!r} {self.proc.stderr.read() if self.proc.stderr else ''}"
            )
        self.address = line.split()[1]
        self.started = time.monotonic()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.communicate(timeout=10)  # reap and close the pipes

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=10)
        return err

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")
