"""Owner and friend each see their own data on the same car's screen (the friend only after
consenting), through real processes; the car's files never hold any of it."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import time
from pathlib import Path

from .procs import CLI, Agent, tether, tether_json


def vcard(name: str) -> str:
    return f"BEGIN:VCARD\nVERSION:4.0\nFN:{name}\nTEL:+49 89 1234\nEND:VCARD\n"


def test_each_driver_sees_their_own_data(tmp_path: Path) -> None:
    car, owner, friend = tmp_path / "car", tmp_path / "owner", tmp_path / "friend"
    tether("vehicle", "init", "--dir", str(car))
    code = tether_json("vehicle", "pairing-code", "--dir", str(car))["code"]
    agent = Agent(car)
    viewer = None
    try:
        tether("phone", "init", "--dir", str(owner))
        tether(
            "phone",
            "pair",
            "--dir",
            str(owner),
            "--vehicle",
            agent.address,
            "--code",
            code,
            "--name",
            "car",
        )
        tether("phone", "init", "--dir", str(friend))
        request = tmp_path / "req"
        tether("phone", "key-request", "--dir", str(friend), "--out", str(request))
        until = (datetime.datetime.now() + datetime.timedelta(days=1)).isoformat(timespec="minutes")
        tether(
            "phone",
            "share",
            "--dir",
            str(owner),
            "--request",
            str(request),
            "--rights",
            "unlock,lock,drive",
            "--until",
            until,
            "--out",
            str(tmp_path / "grant"),
            "--no-qr",
        )
        tether("phone", "accept", "--dir", str(friend), str(tmp_path / "grant"), "--name", "car")

        for phone, who, seat in ((owner, "ADA", 42), (friend, "BEA", 17)):
            (tmp_path / f"{who}.vcf").write_text(vcard(f"CANARY-{who}-contact"))
            (tmp_path / f"{who}.json").write_text(
                json.dumps(
                    {
                        "profile": {
                            "seat": {"position": seat},
                            "radio_presets": [f"CANARY-{who}-radio"],
                        }
                    }
                )
            )
            imported = tether_json(
                "phone",
                "data",
                "import",
                "--dir",
                str(phone),
                str(tmp_path / f"{who}.vcf"),
                str(tmp_path / f"{who}.json"),
            )
            assert imported["imported"] == {"contacts": 1, "profile": 2}

        viewer = subprocess.Popen(
            [*CLI, "vehicle", "headunit", "--dir", str(car), "--json", "--seconds", "60"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
        )
        person = subprocess.Popen(  # what a person at the car's screen reads
            [*CLI, "vehicle", "headunit", "--dir", str(car), "--seconds", "60"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "COLUMNS": "300"},
        )
        time.sleep(1.0)  # let the viewers connect

        seat_signal = "Vehicle.Cabin.Seat.Row1.DriverSide.Position"
        started = tether_json("phone", "start", "--dir", str(owner))
        assert started["ok"] and started["state"][seat_signal] == 42  # Ada's seat, from Ada's phone
        # Bea has not consented: her rule is "ask" and nobody is at the terminal, so: nothing,
        # and Ada's seat went back to neutral when her session ended (easy exit).
        started = tether_json("phone", "start", "--dir", str(friend))
        assert started["ok"] and started["state"][seat_signal] == 0
        tether("phone", "consent", "set", "--dir", str(friend), "--decision", "allow")
        started = tether_json("phone", "start", "--dir", str(friend))
        assert started["ok"] and started["state"][seat_signal] == 17  # Bea's seat, from Bea's phone
        time.sleep(0.5)
    finally:
        if viewer is not None:
            viewer.terminate()
        person.terminate()
        agent_log = agent.stop()
    screen, _ = person.communicate(timeout=10)
    assert "My phone: contacts CANARY-ADA-contact" in screen and "seat 42" in screen, screen
    assert "key " not in screen  # drivers by name, not by key id
    assert "CANARY" not in agent_log  # nothing personal in the car's own log output
    lines, _ = viewer.communicate(timeout=10) if viewer else ("", "")
    events = [json.loads(line) for line in lines.splitlines() if line.strip()]
    shown = [e for e in events if e["event"] == "shown"]
    assert len(shown) == 3, events
    assert shown[0]["data"]["contacts"][0]["name"] == "CANARY-ADA-contact"
    assert shown[0]["data"]["profile"]["seat"]["position"] == 42
    assert shown[1]["data"] == {} and set(shown[1]["denied"]) == {"profile", "contacts", "calendar"}
    assert shown[2]["data"]["contacts"][0]["name"] == "CANARY-BEA-contact"
    assert "CANARY-ADA" not in json.dumps(shown[2])
    assert sum(e["event"] == "forgotten" for e in events) == 3

    log = tether_json("phone", "consent", "show", "--dir", str(friend))["disclosures"]
    assert [d["decision"] for d in log if d["category"] == "contacts"] == ["refused", "disclosed"]
    disk = b"".join(p.read_bytes() for p in car.rglob("*") if p.is_file())
    assert b"CANARY" not in disk
    saved = json.loads((car / "body.json").read_text())
    assert saved[seat_signal] == 0  # no driver's seat outlives the session on disk


def test_the_head_unit_asks_on_demand_while_a_phone_holds_its_session(tmp_path: Path) -> None:
    car, phone = tmp_path / "car", tmp_path / "phone"
    tether("vehicle", "init", "--dir", str(car))
    code = tether_json("vehicle", "pairing-code", "--dir", str(car))["code"]
    agent = Agent(car)
    holder = None
    try:
        tether("phone", "init", "--dir", str(phone))
        tether("phone", "pair", "--dir", str(phone), "--vehicle", agent.address, "--code", code)
        (tmp_path / "people.vcf").write_text(
            vcard("CANARY-Ada Lovelace") + vcard("CANARY-Alan Turing") + vcard("CANARY-Bob")
        )
        (tmp_path / "mine.json").write_text(
            json.dumps(
                {
                    "profile": {"seat": {"position": 618}},
                    "favourites": [{"kind": "home", "name": "CANARY-Home"}],
                }
            )
        )
        tether(
            "phone",
            "data",
            "import",
            "--dir",
            str(phone),
            str(tmp_path / "people.vcf"),
            str(tmp_path / "mine.json"),
        )
        nobody = tether("vehicle", "headunit", "search", "A", "--dir", str(car), check=False)
        assert nobody.returncode == 2 and "no phone holds a session" in nobody.stderr
        holder = subprocess.Popen(
            [*CLI, "phone", "drive", "--dir", str(phone), "--seconds", "60", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "TETHER_PASSPHRASE": "correct horse battery"},
        )
        deadline = time.monotonic() + 20
        while True:  # until the phone's session is up
            found = tether(
                "vehicle",
                "headunit",
                "search",
                "CANARY-A",
                "--dir",
                str(car),
                "--json",
                check=False,
            )
            if found.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        answer = json.loads(found.stdout)
        names = [c["name"] for c in answer["granted"]["contacts"]]
        assert names == ["CANARY-Ada Lovelace", "CANARY-Alan Turing"]  # the prefix, by the phone
        favourites = tether("vehicle", "headunit", "favourites", "--dir", str(car)).stdout
        assert "CANARY-Home" in favourites
        profile = tether("vehicle", "headunit", "profile", "--dir", str(car)).stdout
        assert "seat 618" in profile
        media = tether("vehicle", "headunit", "media", "--dir", str(car)).stdout
        assert "0 media" in media  # allowed, and the phone has none
        tether(
            "phone",
            "consent",
            "set",
            "--dir",
            str(phone),
            "--category",
            "contacts",
            "--decision",
            "deny",
        )
        refused = tether("vehicle", "headunit", "search", "CANARY", "--dir", str(car), check=False)
        assert refused.returncode == 1 and "contacts not shared" in refused.stdout
        holder.terminate()
        out, _ = holder.communicate(timeout=20)
        assert json.loads(out)["ended"] == "stopped"
        holder = None
    finally:
        if holder is not None:
            holder.kill()
            holder.communicate(timeout=10)
        log = agent.stop()
    assert "CANARY" not in log
    disk = b"".join(p.read_bytes() for p in car.rglob("*") if p.is_file())
    assert b"CANARY" not in disk
    seat = json.loads((car / "body.json").read_text())[
        "Vehicle.Cabin.Seat.Row1.DriverSide.Position"
    ]
    assert seat == 0  # asking for the profile shows it; it sets nothing and saves nothing
