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

    def __init__(
        self, directory: Path, *extra: str, listen: tuple[str, ...] = ("tcp://127.0.0.1:0",)
    ) -> None:
        self.directory = directory
        self.proc = subprocess.Popen(
            [
                *CLI,
                "vehicle",
                "run",
                "--dir",
                str(directory),
                *(arg for url in listen for arg in ("--listen", url)),
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
        words = line.split()
        self.addresses = words[1 : words.index("vehicle")]  # one per --listen, in order
        self.address = self.addresses[0]
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


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_listening(port: int, timeout: float = 20) -> None:
    """Until something listens on 127.0.0.1:``port`` (read from /proc, without connecting)."""
    wanted = f"0100007F:{port:04X}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for table in ("/proc/net/tcp",):
            for row in Path(table).read_text().splitlines()[1:]:
                fields = row.split()
                if fields[1] == wanted and fields[3] == "0A":  # 0A: LISTEN
                    return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


class Controllers:
    """bumble's virtual controllers in their own process, linked by one virtual radio: each is
    an HCI controller on a TCP port, the code path a USB dongle takes (`ble:tcp-client:...`)."""

    def __init__(self, count: int = 2) -> None:
        self.ports = [free_port() for _ in range(count)]
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bumble.apps.controllers",
                *(f"tcp-server:127.0.0.1:{port}" for port in self.ports),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for port in self.ports:
            wait_listening(port)

    def hci(self, index: int) -> str:
        return f"ble:tcp-client:127.0.0.1:{self.ports[index]}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.communicate(timeout=10)
