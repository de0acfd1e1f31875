"""The vault import (issue 19, item 3): all or nothing, idempotent, errors name the file, past
events counted, the sample files in examples/vault/ import, `data show` prints for people."""

from __future__ import annotations

import json
from pathlib import Path

from .procs import tether

EXAMPLES = Path(__file__).parents[2] / "examples" / "vault"
SAMPLES = [str(EXAMPLES / n) for n in ("contacts.vcf", "calendar.ics", "profile.json")]


def test_import_is_all_or_nothing_and_idempotent(tmp_path: Path) -> None:
    phone = str(tmp_path / "phone")
    tether("phone", "init", "--dir", phone)
    broken = tmp_path / "broken.json"
    broken.write_text('{"profile": [1, 2]}')
    failed = tether("phone", "data", "import", "--dir", phone, *SAMPLES, str(broken), check=False)
    assert failed.returncode == 2 and "broken.json" in failed.stderr
    assert "nothing was imported" in failed.stderr
    empty = json.loads(tether("phone", "data", "show", "--dir", phone, "--json").stdout)
    assert empty["contacts"] == [] and empty["calendar"] == [] and empty["profile"] == {}

    first = json.loads(tether("phone", "data", "import", "--dir", phone, *SAMPLES, "--json").stdout)
    assert first["imported"]["contacts"] == 2 and first["imported"]["favourites"] == 2
    assert first["imported"]["calendar"] > 0 and first["past_events_skipped"] >= 1
    again = json.loads(tether("phone", "data", "import", "--dir", phone, *SAMPLES, "--json").stdout)
    assert all(n == 0 for n in again["imported"].values()), again  # the calendar is not doubled
    held = json.loads(tether("phone", "data", "show", "--dir", phone, "--json").stdout)
    assert len(held["calendar"]) == first["imported"]["calendar"]

    shown = tether("phone", "data", "show", "--dir", phone).stdout
    assert "Bea Example" in shown and "['" not in shown and "{'" not in shown  # no Python reprs
