"""Shared CLI output: rich tables for people, one JSON document for scripts (--json)."""

from __future__ import annotations

import datetime
import json
from typing import Any

from rich.console import Console, RenderableType
from rich.table import Table as _RichTable
from rich.text import Text

from tether.errors import peer_text

out = Console()
err = Console(stderr=True)


class Table(_RichTable):
    """A rich table whose text cells are shown literally, never read as markup.

    Names, labels, reasons and details come from stores that peers wrote into (a car's name, a
    friend's label): a ``[/red]`` in one must print as itself, not end a style or crash the
    command. Our own styled cells are passed as :func:`styled` Text objects.
    """

    def __init__(self, *headers: Any, title: str | None = None, **kwargs: Any) -> None:
        super().__init__(*headers, title=literal(title) if title is not None else None, **kwargs)

    def add_row(self, *cells: RenderableType | None, **kwargs: Any) -> None:
        super().add_row(
            *(Text(peer_text(c, 400)) if isinstance(c, str) else c for c in cells), **kwargs
        )


def styled(text: str, style: str) -> Text:
    """One of our own words in a colour (not markup, so it composes with literal cells)."""
    return Text(text, style=style)


def literal(text: object) -> Text:
    """Stored text for a sentence: printable, bounded, never markup."""
    return Text(peer_text(str(text), 400))


def emit_json(document: Any) -> None:
    """Print exactly one JSON document on stdout."""
    print(json.dumps(document, indent=2, sort_keys=True, default=str))


def when(timestamp: float | None) -> str:
    """A timestamp as local ISO time, or '-'."""
    if timestamp is None:
        return "-"
    return datetime.datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")
