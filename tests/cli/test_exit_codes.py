"""One exit code table for every command, and one JSON document for scripts even on failure
(issue 19, item 5): 0 done, 1 refused, 2 usage or input, 3 car or server unreachable, 4 a bug."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "tether.cli"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "200", "TETHER_PASSPHRASE": "exit codes"},
    )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when this returns: nobody listens


@pytest.fixture(scope="module")
def phone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("codes") / "phone"
    assert run("phone", "init", "--dir", str(directory)).returncode == 0
    return directory


def cases(phone: Path, port: int) -> list[tuple[list[str], int, str]]:
    p = str(phone)
    return [
        (
            ["phone", "pair", "--dir", p, "--vehicle", "127.0.0.1:7300x", "--code", "12345678"],
            2,
            "usage_error",
        ),
        (
            ["phone", "pair", "--dir", p, "--vehicle", f"tcp://127.0.0.1:{port}", "--code", "1234"],
            2,
            "usage_error",
        ),
        (
            [
                "phone",
                "pair",
                "--dir",
                p,
                "--vehicle",
                f"tcp://127.0.0.1:{port}",
                "--code",
                "12345678",
            ],
            3,
            "unreachable",
        ),
        (["phone", "unlock", "--dir", p], 2, "usage_error"),  # no key yet
        (["phone", "accept", "--dir", p, "tether://grant/AAAA"], 2, "usage_error"),
        (["phone", "keys", "remove", "--dir", p, "--car", "none"], 2, "usage_error"),
        (["vehicle", "audit", "--dir", str(phone.parent / "nothing")], 2, "missing"),
        (
            ["phone", "telemetry", "--dir", p, "--server", f"http://127.0.0.1:{port}"],
            2,
            "usage_error",
        ),
    ]


def test_every_failure_has_its_code_and_a_json_document(phone: Path) -> None:
    port = _closed_port()
    for args, status, code in cases(phone, port):
        plain = run(*args)
        assert plain.returncode == status, (args, plain.stdout, plain.stderr)
        assert "Traceback" not in plain.stderr
        scripted = run(*args, "--json")
        assert scripted.returncode == status, (args, scripted.stderr)
        document = json.loads(scripted.stdout)
        assert document["ok"] is False and document["error"]["exit"] == status
        assert document["error"]["code"] == code, (args, document)


def test_an_unreachable_server_is_called_a_server(tmp_path: Path) -> None:
    # A wallet with a key, and a server address where nothing listens.
    phone = tmp_path / "phone"
    assert run("phone", "init", "--dir", str(phone)).returncode == 0
    server = f"http://127.0.0.1:{_closed_port()}".encode()
    link = "tether://invite/" + base64.urlsafe_b64encode(server).decode().rstrip("=") + "#token"
    result = run("phone", "request-key", "--dir", str(phone), link)
    assert result.returncode == 3, result.stderr
    assert "server unreachable" in result.stderr and "car unreachable" not in result.stderr
