"""Shared CLI output: rich tables for people, one JSON document for scripts (--json)."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from rich.console import Console, RenderableType
from rich.table import Table as _RichTable
from rich.text import Text

from tether.errors import UsageError, peer_text

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


def hand_over(link: str, *, what: str, qr_file: Path | None, show_qr: bool) -> None:
    """Show a link so that it survives copy and paste, and its QR code where one can be read.

    The link is printed on a line of its own, never wrapped (terminals wrap it visually; a copy
    takes it whole). A QR code goes to the terminal only if it fits its width, otherwise (or with
    ``--qr-file``) to a PNG or SVG file a phone's camera can read from the screen.
    """
    import shutil

    import segno

    code = segno.make(link, error="l")
    if qr_file is not None:
        if qr_file.suffix.lower() not in (".png", ".svg"):
            raise UsageError("--qr-file ends in .png or .svg")
        code.save(str(qr_file), scale=6, border=4)
        out.print(f"QR code of the {what} written to {qr_file}")
    elif show_qr:
        width, _ = code.symbol_size(scale=1, border=2)
        if width <= shutil.get_terminal_size((80, 24)).columns:
            code.terminal(compact=True, border=2)
        else:
            out.print(
                f"(the {what}'s QR code is {width} columns wide, more than this terminal;"
                " --qr-file FILE.png writes it to a file)"
            )
    print(f"Link: {link}", flush=True)  # plain print: rich would hard-wrap it into lines


def read_link(text: str) -> str:
    """A link as pasted: whitespace and line breaks a terminal or mail client added removed."""
    return "".join(text.split())
