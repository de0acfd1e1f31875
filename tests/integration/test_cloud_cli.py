"""Processes only: a server, a car agent linked to it, the owner's and a friend's phone CLIs."""

from __future__ import annotations

import datetime
import json
import signal
import subprocess
import time
from pathlib import Path

from tests.cloud.rig import free_port

from .procs import CLI, Agent, tether, tether_json


class ServerProc:
    def __init__(self, directory: Path) -> None:
        self.proc = subprocess.Popen(
            [
                *CLI,
                "server",
                "--dir",
                str(directory),
                "--listen",
                f"http://127.0.0.1:{free_port()}",
                "--embedded-mqtt-port",
                str(free_port()),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("ready "):
            self.proc.kill()
            raise AssertionError(f"server did not start: {line!r} {self.proc.stderr.read()}")  # type: ignore[union-attr]
        self.url = line.split()[1]

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> str:
        if self.proc.returncode is not None:
            return ""  # stopped before: its output was read then
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        _, err = self.proc.communicate(timeout=20)
        return err


def _until_applied(owner: Path, url: str) -> list[dict[str, object]]:
    deadline = time.monotonic() + 20
    while True:
        states = tether_json("phone", "revocations", "--dir", str(owner), "--server", url)
        if states["revocations"] and all(s["status"] == "applied" for s in states["revocations"]):
            return list(states["revocations"])
        assert time.monotonic() < deadline, states
        time.sleep(0.3)


def test_invite_grant_unlock_remote_revoke_by_cli(tmp_path: Path) -> None:
    car, owner, friend = tmp_path / "car", tmp_path / "owner", tmp_path / "friend"
    server = ServerProc(tmp_path / "server")
    agent: Agent | None = None
    try:
        tether("vehicle", "init", "--dir", str(car), "--name", "Ada's car")
        code = tether_json("vehicle", "pairing-code", "--dir", str(car))["code"]
        agent = Agent(car, "--server", server.url)
        tether("phone", "init", "--dir", str(owner), "--name", "Ada")
        tether("phone", "pair", "--dir", str(owner), "--vehicle", agent.address, "--code", code)
        tether("phone", "init", "--dir", str(friend), "--name", "Bea")

        # The car re-registers once its owner paired; the invitation needs that.
        deadline = time.monotonic() + 20
        while True:
            made = tether(
                "phone",
                "invite",
                "--dir",
                str(owner),
                "--server",
                server.url,
                "--name",
                "Bea",
                "--json",
                check=False,
            )
            if made.returncode == 0:
                break
            assert time.monotonic() < deadline, made.stderr
            time.sleep(0.3)
        link = json.loads(made.stdout)["link"]
        assert link.startswith("tether://invite/")
        tether("phone", "request-key", "--dir", str(friend), link, "--name", "Bea")
        pending = tether_json("phone", "requests", "--dir", str(owner), "--server", server.url)
        assert [r["label"] for r in pending["requests"]] == ["Bea"]
        until = (datetime.datetime.now() + datetime.timedelta(days=1)).isoformat(timespec="minutes")
        granted = tether_json(
            "phone",
            "grant",
            "--dir",
            str(owner),
            "--server",
            server.url,
            "--rights",
            "unlock,lock",
            "--until",
            until,
        )
        [serial] = [g["serial"] for g in granted["granted"]]
        fetched = tether_json("phone", "fetch", "--dir", str(friend), "--server", server.url)
        assert fetched["accepted"][0]["rights"] == ["lock", "unlock"]

        assert tether_json("phone", "unlock", "--dir", str(friend))["ok"]
        start = tether("phone", "start", "--dir", str(friend), "--json", check=False)
        assert start.returncode == 1 and '"no_right"' in start.stdout

        # The owner is away: a remote lock, then a remote revocation of Bea's grant.
        locked = tether_json("phone", "remote", "--dir", str(owner), "--server", server.url, "lock")
        assert locked["ok"]
        found = tether("phone", "remote", "--dir", str(owner), "--server", server.url, "locate")
        assert "the car is at 48.13715, 11.5" in found.stdout  # signed by the car, not the server
        tether(
            "phone",
            "revoke-remote",
            "--dir",
            str(owner),
            "--server",
            server.url,
            "--grant",
            serial[:8],
        )
        _until_applied(owner, server.url)
        refused = tether("phone", "unlock", "--dir", str(friend), "--json", check=False)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        # Bea cannot use the cloud either: a remote unlock with her revoked key is refused.
        remote = tether(
            "phone", "remote", "--dir", str(friend), "--server", server.url, "unlock", check=False
        )
        assert remote.returncode == 1 and "403" in remote.stderr

        telemetry = tether_json("phone", "telemetry", "--dir", str(owner), "--server", server.url)
        assert telemetry["state"]["Vehicle.Cabin.Door.Row1.DriverSide.IsLocked"] is True
        audit = tether_json("vehicle", "audit", "--dir", str(car), "--verify")
        assert audit["verified"]
        remote_entries = [e for e in audit["entries"] if e["detail"] == "remote"]
        assert [e["command"] for e in remote_entries] == ["lock", "locate"]
    finally:
        if agent is not None:
            agent.stop()
        server.stop()


def test_stopping_the_server_under_a_connected_car_warns_of_nothing(tmp_path: Path) -> None:
    server = ServerProc(tmp_path / "server")
    car = tmp_path / "car"
    tether("vehicle", "init", "--dir", str(car), "--name", "Ada's car")
    agent = Agent(car, "--server", server.url)
    try:
        time.sleep(3)  # the car registers and joins the broker, with its last will
        err = server.stop(signal.SIGINT)
    finally:
        agent.stop()
    # A car's last will queued at shutdown is nothing to warn about, and never twice.
    assert "not broadcasted" not in err and "WARNING" not in err, err
