"""Serve the web phone at ``/phone/``: its files as they are, and the libraries it imports.

The libraries (cborg, ical.js, qr, @noble/curves with @noble/hashes) come from the checkout's
``node_modules`` that ``npm ci`` fills from ``package-lock.json``; the page's import map points
at ``/phone/vendor/``. Only the web phone's own file kinds are served, never the Python beside.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.staticfiles import StaticFiles

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
NODE_MODULES = HERE.parents[2] / "node_modules"
VENDOR = ("cborg", "ical.js", "qr", "@noble/curves", "@noble/hashes")
_KINDS = (".html", ".js", ".css", ".svg", ".webmanifest", ".json")


class _Files(StaticFiles):
    """Static files of the web's own kinds only (no .py, no dotfiles)."""

    async def get_response(self, path: str, scope: Any) -> Any:
        name = Path(path).name
        if path not in ("", ".") and (name.startswith(".") or not name.endswith(_KINDS)):
            raise HTTPException(404)
        return await super().get_response(path, scope)


def mount(app: FastAPI) -> None:
    """Add ``/phone/`` (and its libraries) to the server's app."""
    for package in VENDOR:
        root = NODE_MODULES / package
        if root.is_dir():
            app.mount(f"/phone/vendor/{package}", _Files(directory=root), name=f"vendor-{package}")
        else:
            log.warning("web phone: %s is missing; run `npm ci` in the checkout", package)
    app.mount("/phone", _Files(directory=HERE, html=True), name="phone")
