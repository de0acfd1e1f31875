"""Three processes over loopback TCP: the car agent, the owner's phone CLI, and a second CLI run."""

from __future__ import annotations

from pathlib import Path

from .procs import Agent, tether, tether_json


def test_pair_unlock_lock_start_over_tcp(tmp_path: Path) -> None:
    car, phone = tmp_path / "car", tmp_path / "phone"
    tether("vehicle", "init", "--dir", str(car), "--name", "Ada's car")
    code = tether_json("vehicle", "pairing-code", "--dir", str(car))["code"]
    agent = Agent(car)
    try:
        tether("phone", "init", "--dir", str(phone), "--name", "Ada's phone")
        paired = tether_json(
            "phone", "pair", "--dir", str(phone), "--vehicle", agent.address, "--code", code
        )
        assert paired["car"] == "Ada's car"

        unlock = tether_json("phone", "unlock", "--dir", str(phone))
        assert unlock["ok"] and not unlock["fast"]
        assert unlock["state"]["Vehicle.Cabin.Door.Row1.DriverSide.IsLocked"] is False

        # A second run of the CLI: a new process, same wallet, now with the fast key.
        lock = tether_json("phone", "lock", "--dir", str(phone))
        assert lock["ok"] and lock["fast"]

        start = tether_json("phone", "start", "--dir", str(phone))
        assert (
            start["ok"] and not start["fast"]
        )  # the phone knows start needs a standard transaction

        refused = tether("phone", "start", "--dir", str(phone), "--json", check=False)
        assert refused.returncode == 0  # start again: allowed, idempotent

        keys = tether_json("phone", "keys", "--dir", str(phone))["keys"]
        assert keys[0]["fast_ready"] and keys[0]["transactions"] == 4

        # locate says where the car is, not only "done".
        located = tether("phone", "locate", "--dir", str(phone))
        assert "done" in located.stdout and "the car is at 48.13715, 11.5" in located.stdout

        status = tether_json("vehicle", "status", "--dir", str(car))
        assert status["state"]["Vehicle.LowVoltageSystemState"] == "ON"
        assert [k["role"] for k in status["keys"]] == ["owner"]

        audit = tether_json("vehicle", "audit", "--dir", str(car), "--verify")
        assert audit["verified"]
        commands = [(e["command"], e["result"]) for e in audit["entries"]]
        assert (
            ("unlock", "ok") in commands
            and ("lock", "ok") in commands
            and ("start", "ok") in commands
        )
    finally:
        agent.stop()


def test_exit_codes_and_errors_without_tracebacks(tmp_path: Path) -> None:
    car, phone = tmp_path / "car", tmp_path / "phone"
    tether("vehicle", "init", "--dir", str(car))
    tether("phone", "init", "--dir", str(phone))
    agent = Agent(car)
    try:
        wrong = tether(
            "phone",
            "pair",
            "--dir",
            str(phone),
            "--vehicle",
            agent.address,
            "--code",
            "00000000",
            check=False,
        )
        assert (
            wrong.returncode == 1
            and "no pairing code" in wrong.stderr
            and "Traceback" not in wrong.stderr
        )
        code = tether_json("vehicle", "pairing-code", "--dir", str(car))["code"]
        bad = "1" * 8 if code != "1" * 8 else "2" * 8
        wrong = tether(
            "phone",
            "pair",
            "--dir",
            str(phone),
            "--vehicle",
            agent.address,
            "--code",
            bad,
            check=False,
        )
        assert wrong.returncode == 1 and "wrong_code" in wrong.stderr
        short = tether(
            "phone",
            "pair",
            "--dir",
            str(phone),
            "--vehicle",
            agent.address,
            "--code",
            "123",
            check=False,
        )
        assert (
            short.returncode == 2 and "at least 8 digits" in short.stderr
        )  # a typo: usage, never sent to the car
        tether("phone", "pair", "--dir", str(phone), "--vehicle", agent.address, "--code", code)
        # Revoke the phone locally: the car refuses it from now on (exit 1, reason printed).
        key = tether_json("phone", "keys", "--dir", str(phone))["keys"][0]["key_id"]
        tether("vehicle", "revoke", "--dir", str(car), "--key", key[:12])
        refused = tether("phone", "unlock", "--dir", str(phone), check=False)
        assert refused.returncode == 1 and "no valid key" in refused.stderr
    finally:
        agent.stop()
    unreachable = tether("phone", "unlock", "--dir", str(phone), check=False)
    assert unreachable.returncode == 3 and "unreachable" in unreachable.stderr
    usage = tether("phone", "unlock", "--dir", str(tmp_path / "nothing"), check=False)
    assert usage.returncode == 2 and "no store" in usage.stderr
    busy = tether("vehicle", "init", "--dir", str(car), check=False)
    assert busy.returncode == 2 and "already holds" in busy.stderr
    no_car = tether("vehicle", "run", "--dir", str(tmp_path / "none"), check=False)
    assert no_car.returncode == 2 and "no store" in no_car.stderr


def test_audit_verify_fails_on_tampering(tmp_path: Path) -> None:
    import sqlite3

    car = tmp_path / "car"
    tether("vehicle", "init", "--dir", str(car))
    tether("vehicle", "pairing-code", "--dir", str(car))
    tether("vehicle", "pairing-code", "--dir", str(car))
    conn = sqlite3.connect(car / "vehicle.db")
    conn.execute("UPDATE audit SET command = 'x' WHERE seq = 2")
    conn.commit()
    conn.close()
    result = tether("vehicle", "audit", "--dir", str(car), "--verify", check=False)
    assert result.returncode == 1
    assert "broken at entry 2" in result.stderr and "edited" in result.stderr
