"""The car as a process on a Bluetooth controller and on WebSocket, the phone CLI on the other end.

bumble's virtual controllers run in a process of their own, linked by a virtual radio; the car's
`vehicle run --listen ble:tcp-client:...` drives one of them over HCI, as it would a USB dongle,
and each phone CLI run drives the other. The same car listens on ws:// for browser phones.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .procs import CLI, Agent, Controllers, tether, tether_json


@pytest.mark.slow
def test_pair_and_unlock_over_ble_hci_and_websocket(tmp_path: Path) -> None:
    car, phone, browser = tmp_path / "car", tmp_path / "phone", tmp_path / "browser"
    tether("vehicle", "init", "--dir", str(car), "--name", "Radio car")
    radio = Controllers()
    try:
        agent = Agent(car, listen=(radio.hci(0), "ws://127.0.0.1:0"))
        try:
            ble_address, ws_address = agent.addresses
            assert ble_address.startswith(radio.hci(0) + "@") and ws_address.startswith("ws://")
            car_radio = ble_address.rpartition("@")[2]  # the car's BLE address, from its id
            over_the_air = f"{radio.hci(1)}@{car_radio}"

            tether("phone", "init", "--dir", str(phone), "--name", "Ada's phone")
            code = tether_json("vehicle", "pairing-code", "--dir", str(car))["code"]
            paired = tether_json(
                "phone", "pair", "--dir", str(phone), "--vehicle", over_the_air, "--code", code
            )
            assert paired["car"] == "Radio car"
            standard = tether_json("phone", "unlock", "--dir", str(phone))
            assert standard["ok"] and not standard["fast"]
            fast = tether_json("phone", "lock", "--dir", str(phone))
            assert fast["ok"] and fast["fast"]  # a new process, a new BLE link, one round trip

            tether("phone", "init", "--dir", str(browser), "--name", "Bea's browser")
            code = tether_json("vehicle", "pairing-code", "--dir", str(car))["code"]
            tether("phone", "pair", "--dir", str(browser), "--vehicle", ws_address, "--code", code)
            assert tether_json("phone", "unlock", "--dir", str(browser))["ok"]
            assert tether_json("phone", "lock", "--dir", str(browser))["fast"]

            audit = tether_json("vehicle", "audit", "--dir", str(car), "--verify")
            assert audit["verified"]
            done = [(e["command"], e["result"], e["detail"]) for e in audit["entries"]]
            assert ("unlock", "ok", "standard") in done and ("lock", "ok", "fast") in done
        finally:
            err = agent.stop()
        assert "Traceback" not in err, err
    finally:
        radio.stop()


def test_listen_addresses_are_checked_before_anything_opens(tmp_path: Path) -> None:
    car = tmp_path / "car"
    tether("vehicle", "init", "--dir", str(car))
    refused = tether("vehicle", "run", "--dir", str(car), "--listen", "udp://0:1", check=False)
    assert refused.returncode == 2 and "not a transport address" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (car / "agent.lock").exists() or (car / "agent.lock").read_text() == ""


def _doors_locked(car: Path) -> bool:
    state = tether_json("vehicle", "status", "--dir", str(car))["state"]
    return bool(state["Vehicle.Cabin.Door.Row1.DriverSide.IsLocked"])


def _until(condition: Callable[[], bool], seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.3)
    return False


@pytest.mark.slow
def test_hands_free_from_a_real_session_on_ble_and_attacks_refused(tmp_path: Path) -> None:
    """The phone CLI holds a BLE session; the car ranges it (--ranger sim) and decides alone."""
    car, phone = tmp_path / "car", tmp_path / "phone"
    tether("vehicle", "init", "--dir", str(car), "--name", "Radio car")
    radio = Controllers()
    holder = None
    try:
        agent = Agent(car, "--ranger", "sim", listen=(radio.hci(0),))
        try:
            over_the_air = f"{radio.hci(1)}@{agent.address.rpartition('@')[2]}"
            tether("phone", "init", "--dir", str(phone))
            code = tether_json("vehicle", "pairing-code", "--dir", str(car))["code"]
            tether("phone", "pair", "--dir", str(phone), "--vehicle", over_the_air, "--code", code)
            holder = subprocess.Popen(
                [*CLI, "phone", "drive", "--dir", str(phone), "--seconds", "120", "--json"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "TETHER_PASSPHRASE": "correct horse battery"},
            )
            time.sleep(2.0)  # the session is up and the car ranges it every second
            # A relay and an early-answering device at the door: the car stays shut and off.
            for kind in ("relay", "early"):
                tether("vehicle", "sim", "attack", "--dir", str(car), "--kind", kind)
                time.sleep(3.0)  # three measurements
                assert _doors_locked(car)
            refused = tether_json_ok("vehicle", "button", "--dir", str(car))
            assert not refused["ok"] and refused["reason"] == "ranging_required"
            # The real phone walks up: the car opens by itself, then starts from the button.
            tether("vehicle", "sim", "attack", "--dir", str(car), "--kind", "none")
            tether("vehicle", "sim", "walk", "--dir", str(car), "--to", "door")
            assert _until(lambda: not _doors_locked(car)), "no passive unlock at the door"
            tether("vehicle", "sim", "walk", "--dir", str(car), "--to", "cabin")
            assert _until(lambda: tether_json_ok("vehicle", "button", "--dir", str(car))["ok"])
            # And walks away: after 3 s beyond 5 m the car locks itself.
            tether("vehicle", "sim", "walk", "--dir", str(car), "--to", "away")
            assert _until(lambda: _doors_locked(car)), "no walk-away lock"
            holder.send_signal(signal.SIGINT)
            out, err = holder.communicate(timeout=20)
            assert json.loads(out)["ended"] == "stopped", err
            holder = None
            audit = tether_json("vehicle", "audit", "--dir", str(car), "--verify")
            done = [(e["command"], e["result"], e["reason"]) for e in audit["entries"]]
            assert ("passive unlock", "ok", "") in done
            assert ("push-button start", "ok", "") in done
            assert ("push-button start", "denied", "ranging_required") in done
            assert ("passive lock", "ok", "") in done
        finally:
            if holder is not None:
                holder.kill()
                holder.communicate(timeout=10)
            agent.stop()
    finally:
        radio.stop()


def tether_json_ok(*args: str) -> Any:
    """A command's JSON whether it succeeded (exit 0) or was refused (exit 1)."""
    result = tether(*args, "--json", check=False)
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)
