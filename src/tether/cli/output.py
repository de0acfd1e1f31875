"""Shared CLI output: rich tables for people, one JSON document for scripts (--json)."""

from __future__ import annotations

import datetime
import json
from typing import Any

from rich.console import Console

out = Console()
err = Console(stderr=True)


def emit_json(document: Any) -> None:
    """Print exactly one JSON document on stdout."""
    print(json.dumps(document, indent=2, sort_keys=True, default=str))


def when(timestamp: float | None) -> str:
    """A timestamp as local ISO time, or '-'."""
    if timestamp is None:
        return "-"
    return datetime.datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")
