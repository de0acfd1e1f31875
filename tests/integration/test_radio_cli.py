"""The car as a process on a Bluetooth controller and on WebSocket, the phone CLI on the other end.

bumble's virtual controllers run in a process of their own, linked by a virtual radio; the car's
`vehicle run --listen ble:tcp-client:...` drives one of them over HCI, as it would a USB dongle,
and each phone CLI run drives the other. The same car listens on ws:// for browser phones.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .procs import Agent, Controllers, tether, tether_json


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
