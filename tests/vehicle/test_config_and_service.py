"""`DIR/car.toml` configures `vehicle run`; `vehicle service` prints a hardened systemd unit."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.integration.procs import Agent, tether
from tether.errors import UsageError
from tether.vehicle.config import CarConfig, load


def test_a_full_config_is_read(tmp_path: Path) -> None:
    (tmp_path / "car.toml").write_text(
        'listen = ["ble:usb:0", "ws://0.0.0.0:7301"]\nbody = "can"\ncan_mapping = "map.toml"\n'
        'server = "http://127.0.0.1:8000"\nmqtt = "mqtt://127.0.0.1:1883"\nranger = "sim"\n'
    )
    assert load(tmp_path) == CarConfig(
        listen=("ble:usb:0", "ws://0.0.0.0:7301"),
        body="can",
        can_mapping=tmp_path / "map.toml",
        server="http://127.0.0.1:8000",
        mqtt="mqtt://127.0.0.1:1883",
        ranger="sim",
    )
    (tmp_path / "car.toml").write_text('listen = "tcp://127.0.0.1:1"\n')
    assert load(tmp_path).listen == ("tcp://127.0.0.1:1",)
    assert load(tmp_path / "nowhere") == CarConfig()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("listen = [", "cannot read"),
        ('lisen = ["tcp://h:1"]', "unknown setting lisen"),
        ("listen = []", "listen must be"),
        ("listen = [1]", "listen must be a non-empty string"),
        ('body = "hovercraft"', "body must be one of virtual, can"),
        ("ranger = true", "ranger must be a non-empty string"),
    ],
)
def test_a_bad_config_names_what_is_wrong(tmp_path: Path, text: str, says: str) -> None:
    (tmp_path / "car.toml").write_text(text)
    with pytest.raises(UsageError, match=says):
        load(tmp_path)


def test_vehicle_run_needs_no_flags_with_a_config(tmp_path: Path) -> None:
    car = tmp_path / "car"
    tether("vehicle", "init", "--dir", str(car))
    (car / "car.toml").write_text('listen = ["ws://127.0.0.1:0", "tcp://127.0.0.1:0"]\n')
    agent = Agent(car, listen=())
    try:
        assert [a.split(":")[0] for a in agent.addresses] == ["ws", "tcp"]
    finally:
        agent.stop()
    (car / "car.toml").write_text('body = "hovercraft"\n')
    refused = tether("vehicle", "run", "--dir", str(car), check=False)
    assert refused.returncode == 2 and "body must be one of" in refused.stderr


def test_the_service_unit_is_hardened_and_installs(tmp_path: Path) -> None:
    car = tmp_path / "car"
    tether("vehicle", "init", "--dir", str(car))
    text = tether("vehicle", "service", "--dir", str(car), "--user", "tether").stdout
    assert f"vehicle run --dir {car.resolve()}" in text
    for line in (
        "User=tether",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        f"ReadWritePaths={car.resolve()}",
        "PrivateTmp=yes",
        "UMask=0077",
        "CapabilityBoundingSet=",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_BLUETOOTH AF_CAN AF_NETLINK",
        "WantedBy=multi-user.target",
    ):
        assert line in text.splitlines(), line
    hci = tether("vehicle", "service", "--dir", str(car), "--hci-socket").stdout
    assert "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW" in hci
    units = tmp_path / "units"
    units.mkdir()
    tether("vehicle", "service", "--dir", str(car), "--install", "--unit-dir", str(units))
    installed = units / "tether-car.service"
    assert installed.read_text() == tether("vehicle", "service", "--dir", str(car)).stdout
    assert stat.S_IMODE(installed.stat().st_mode) == 0o644
    if shutil.which("systemd-analyze"):
        check = subprocess.run(
            ["systemd-analyze", "verify", str(installed)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert "Unknown key" not in check.stderr and "Invalid" not in check.stderr, check.stderr
    missing = tether("vehicle", "service", "--dir", str(tmp_path / "none"), check=False)
    assert missing.returncode == 2 and "no car in" in missing.stderr
