"""Where each role keeps its state by default, and the optional config file, so that `--dir` and
`--server` need not be given on every command.

Order: the option, then its environment variable (TETHER_PHONE_DIR, TETHER_CAR_DIR,
TETHER_SERVER), then ``$XDG_CONFIG_HOME/tether/config.toml`` (``phone_dir``, ``car_dir``,
``server``), then ``$XDG_DATA_HOME/tether/phone`` or ``.../car`` (``~/.local/share`` by default).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from tether.errors import UsageError


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tether" / "config.toml"


def config() -> dict[str, Any]:
    """The config file's settings ({} when there is none); a broken file is a UsageError."""
    path = config_path()
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read the config file {path}: {exc}") from None


def data_dir(role: str) -> Path:
    """``--dir`` when none was given: the config file's, or ``$XDG_DATA_HOME/tether/<role>``."""
    configured = config().get(f"{role}_dir")
    if configured:
        return Path(str(configured)).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tether" / role


def phone_dir(value: Path | None) -> Path:
    return value if value is not None else data_dir("phone")


def car_dir(value: Path | None) -> Path:
    return value if value is not None else data_dir("car")


def server(value: str | None) -> str:
    """``--server`` when none was given: the config file's ``server``."""
    if value:
        return value
    configured = config().get("server")
    if not configured:
        raise UsageError(
            "which server? give --server URL, set TETHER_SERVER, or put server = 'URL'"
            f" in {config_path()}"
        )
    return str(configured)
