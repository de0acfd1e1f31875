"""base64url without padding (RFC 4648 §5), the one spelling of bytes in links and JSON bodies."""

from __future__ import annotations

import base64
import binascii

from tether.errors import MalformedMessage


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64(text: str, what: str = "this") -> bytes:
    """The bytes of ``text``; MalformedMessage naming ``what`` if it is not base64url."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, binascii.Error):
        raise MalformedMessage(f"{what} is not base64url") from None
