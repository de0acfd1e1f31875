"""`DIR/car.toml`: how `tether vehicle run --dir DIR` runs this car, so that it needs no flags.

Every setting may also be given as a flag, which wins. A file that is not TOML, an unknown
setting or a value of the wrong kind stops the agent with a sentence that names it (exit 2):
a car that starts with half its configuration is worse than one that does not start.

```toml
listen = ["ble:usb:0", "ws://0.0.0.0:7301"]   # one or more; default tcp://127.0.0.1:7300
body = "can"                                   # virtual (default) or can
can_mapping = "mapping.toml"                   # relative to the car's directory
server = "https://tether.example.org"          # remote commands, revocations, telemetry
mqtt = "mqtt://broker.example.org:1883"        # default: the one the server names
ranger = "none"                                # none (default) or sim
```
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

from tether.errors import UsageError

CONFIG_FILE = "car.toml"
BODIES = ("virtual", "can")
RANGERS = ("none", "sim")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CarConfig:
    """The settings the file gives (None: not given there)."""

    listen: tuple[str, ...] | None = None
    body: str | None = None
    can_mapping: Path | None = None
    server: str | None = None
    mqtt: str | None = None
    ranger: str | None = None


def _text(path: Path, name: str, value: Any, choices: tuple[str, ...] = ()) -> str:
    if not isinstance(value, str) or not value:
        raise UsageError(f"{path}: {name} must be a non-empty string")
    if choices and value not in choices:
        raise UsageError(f"{path}: {name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def load(directory: Path) -> CarConfig:
    """``DIR/car.toml``, checked; an absent file gives no settings."""
    path = directory / CONFIG_FILE
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return CarConfig()
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    known = {f.name for f in dataclasses.fields(CarConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise UsageError(
            f"{path}: unknown setting {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    listen = raw.get("listen")
    if isinstance(listen, str):
        listen = [listen]
    if listen is not None and (not isinstance(listen, list) or not listen):
        raise UsageError(f"{path}: listen must be an address or a list of addresses")
    mapping = raw.get("can_mapping")
    return CarConfig(
        listen=tuple(_text(path, "listen", u) for u in listen) if listen is not None else None,
        body=_text(path, "body", raw["body"], BODIES) if "body" in raw else None,
        can_mapping=directory / _text(path, "can_mapping", mapping)
        if mapping is not None
        else None,
        server=_text(path, "server", raw["server"]) if "server" in raw else None,
        mqtt=_text(path, "mqtt", raw["mqtt"]) if "mqtt" in raw else None,
        ranger=_text(path, "ranger", raw["ranger"], RANGERS) if "ranger" in raw else None,
    )
