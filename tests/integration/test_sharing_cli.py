"""Three processes, files only: the car, the owner's phone and a friend's phone share a key."""

from __future__ import annotations

import datetime
import shutil
from pathlib import Path

from .procs import Agent, tether, tether_json


def test_share_by_files_unlock_refuse_revoke(tmp_path: Path) -> None:
    car, owner, friend = tmp_path / "car", tmp_path / "owner", tmp_path / "friend"
    tether("vehicle", "init", "--dir", str(car), "--name", "Ada's car")
    code = tether_json("vehicle", "pairing-code", "--dir", str(car))["code"]
    agent = Agent(car)
    try:
        tether("phone", "init", "--dir", str(owner), "--name", "Ada")
        tether("phone", "pair", "--dir", str(owner), "--vehicle", agent.address, "--code", code)
        tether("phone", "init", "--dir", str(friend), "--name", "Bea")

        request = tmp_path / "bea.request"
        tether("phone", "key-request", "--dir", str(friend), "--out", str(request), "--name", "Bea")
        until = (datetime.datetime.now() + datetime.timedelta(days=2)).isoformat(timespec="minutes")
        grant_file = tmp_path / "bea.grant"
        shared = tether(
            "phone",
            "share",
            "--dir",
            str(owner),
            "--request",
            str(request),
            "--rights",
            "unlock,lock",
            "--until",
            until,
            "--out",
            str(grant_file),
        )
        assert "tether://grant/" in shared.stdout
        assert "█" in shared.stdout or "▀" in shared.stdout  # the QR code
        issued = tether_json("phone", "keys", "--dir", str(owner))["issued"]
        assert len(issued) == 1 and issued[0]["label"] == "Bea"

        accepted = tether_json("phone", "accept", "--dir", str(friend), str(grant_file))
        assert accepted["rights"] == ["lock", "unlock"]
        foreign = tether("phone", "accept", "--dir", str(friend), str(grant_file), check=False)
        assert foreign.returncode == 2 and "did not request" in foreign.stderr
        before_first_use = tmp_path / "friend-copy"
        shutil.copytree(friend, before_first_use)  # the old grant, never used: replayed later

        first = tether_json("phone", "unlock", "--dir", str(friend))
        assert first["ok"] and not first["fast"]
        assert tether_json("phone", "lock", "--dir", str(friend))["fast"]
        start = tether("phone", "start", "--dir", str(friend), "--json", check=False)
        assert start.returncode == 1 and '"no_right"' in start.stdout

        status = tether_json("vehicle", "status", "--dir", str(car))
        assert sorted(k["role"] for k in status["keys"]) == ["friend", "owner"]

        revoked = tether_json(
            "phone", "revoke", "--dir", str(owner), "--grant", issued[0]["serial"][:8]
        )
        assert revoked["ok"]
        assert tether_json("phone", "keys", "--dir", str(owner))["issued"][0]["revoked"]

        fast = tether("phone", "unlock", "--dir", str(friend), check=False)
        assert fast.returncode == 1 and "no valid key" in fast.stderr
        replay = tether("phone", "unlock", "--dir", str(before_first_use), check=False)
        assert replay.returncode == 1 and "grant_revoked" in replay.stderr
        keys = tether_json("phone", "keys", "--dir", str(friend))["keys"]
        assert keys[0]["status"] == "revoked or unknown to the car"

        audit = tether_json("vehicle", "audit", "--dir", str(car), "--verify", "--limit", "0")
        assert audit["verified"]
        reasons = {e["reason"] for e in audit["entries"]}
        assert {"no_right", "unknown_key", "grant_revoked"} <= reasons
    finally:
        agent.stop()


def test_clear_errors_for_bad_grant_files(tmp_path: Path) -> None:
    friend, owner = tmp_path / "friend", tmp_path / "owner"
    tether("phone", "init", "--dir", str(friend))
    tether("phone", "init", "--dir", str(owner))
    junk = tmp_path / "junk.grant"
    junk.write_bytes(b"not a grant at all")
    bad = tether("phone", "accept", "--dir", str(friend), str(junk), check=False)
    assert bad.returncode == 2 and "not a tether grant" in bad.stderr
    missing = tether("phone", "accept", "--dir", str(friend), str(tmp_path / "nope"), check=False)
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    link = tether("phone", "accept", "--dir", str(friend), "tether://grant/AAAA", check=False)
    assert link.returncode == 2 and "Traceback" not in link.stderr
    no_key = tether(
        "phone",
        "share",
        "--dir",
        str(owner),
        "--request",
        str(junk),
        "--until",
        "2099-01-01T00:00",
        "--out",
        str(tmp_path / "g"),
        check=False,
    )
    assert no_key.returncode == 2 and "no car key" in no_key.stderr
