"""`tether vehicle service`: the systemd unit that runs a car's agent, hardened.

The unit runs `tether vehicle run --dir DIR` (settings in ``DIR/car.toml``), restarts it when it
fails, and takes from it what it does not need: no new privileges, a read-only system, no home
directories, private /tmp, no kernel tunables or modules, no realtime, no namespaces, native
system calls only, a 0077 umask, and only the address families a car uses (UNIX, IPv4/IPv6,
Bluetooth, CAN, netlink). Devices are closed except USB (a Bluetooth dongle) unless asked.
"""

from __future__ import annotations

import getpass
import shlex
import sys
from pathlib import Path

UNIT_NAME = "tether-car.service"
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")


def executable() -> list[str]:
    """How systemd should start tether: this installation's own entry point."""
    beside = Path(sys.executable).with_name("tether")
    if beside.exists():
        return [str(beside)]
    return [sys.executable, "-m", "tether.cli"]


def unit(directory: Path, *, user: str = "", hci_socket: bool = False) -> str:
    """The unit's text for the car in ``directory`` (absolute), run as ``user``."""
    directory = directory.resolve()
    command = shlex.join([*executable(), "vehicle", "run", "--dir", str(directory)])
    capabilities = "CAP_NET_ADMIN CAP_NET_RAW" if hci_socket else ""
    lines = [
        "[Unit]",
        f"Description=tether car agent ({directory})",
        "After=network-online.target bluetooth.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"User={user or getpass.getuser()}",
        f"ExecStart={command}",
        "Restart=on-failure",
        "RestartSec=2",
        # SIGTERM is the agent's clean stop (no new phones, then the sessions, then the store).
        "KillSignal=SIGTERM",
        "TimeoutStopSec=15",
        "UMask=0077",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        f"ReadWritePaths={directory}",
        "ProtectHome=read-only",
        "PrivateTmp=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "RestrictSUIDSGID=yes",
        "RestrictRealtime=yes",
        "RestrictNamespaces=yes",
        "LockPersonality=yes",
        "SystemCallArchitectures=native",
        "SystemCallFilter=@system-service",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_BLUETOOTH AF_CAN AF_NETLINK",
        f"CapabilityBoundingSet={capabilities}",
        f"AmbientCapabilities={capabilities}",
        "DevicePolicy=closed",
        "DeviceAllow=char-usb_device rw",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)


def install(text: str, unit_dir: Path = SYSTEM_UNIT_DIR) -> Path:
    """Write the unit (0644, atomically); the caller runs systemctl."""
    path = unit_dir / UNIT_NAME
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    tmp.replace(path)
    return path
