"""The secure channel (docs/protocol.md §7): AES-256-GCM records with implicit counter nonces.

Each direction has its own key and IV; record *i* uses nonce ``IV xor i`` (TLS 1.3 style), so a
replayed, reordered, dropped or modified record fails authentication and closes the channel.
"""

from __future__ import annotations

import dataclasses

from tether.errors import (
    AuthenticationFailed,
    ChannelError,
    LocalProtocolError,
    ProtocolError,
    WireCode,
)
from tether.protocol import codec
from tether.protocol.crypto import AEAD_NONCE_SIZE, Aead
from tether.protocol.messages import Record

#: Far below AES-GCM's limits; a session is a handful of commands.
MAX_RECORDS = 2**32
_AAD = b"tether/2 record"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ChannelKeys:
    """Keys and IVs of both directions, from the sender's point of view."""

    send_key: bytes
    send_iv: bytes
    recv_key: bytes
    recv_iv: bytes


def _nonce(iv: bytes, counter: int) -> bytes:
    return (int.from_bytes(iv, "big") ^ counter).to_bytes(AEAD_NONCE_SIZE, "big")


class SecureChannel:
    """Seals outgoing and opens incoming records; fails closed on the first bad record."""

    __slots__ = ("_recv", "_recv_count", "_recv_iv", "_send", "_send_count", "_send_iv", "broken")

    def __init__(self, keys: ChannelKeys) -> None:
        self._send = Aead(keys.send_key)
        self._recv = Aead(keys.recv_key)
        self._send_iv = keys.send_iv
        self._recv_iv = keys.recv_iv
        self._send_count = 0
        self._recv_count = 0
        self.broken = False

    def seal(self, plaintext: bytes) -> bytes:
        """Encrypt ``plaintext`` as the next record, returned encoded as a :class:`Record`."""
        if self.broken:
            raise LocalProtocolError("the channel is closed after an error")
        if self._send_count >= MAX_RECORDS:
            raise LocalProtocolError("too many records on one channel; start a new transaction")
        ct = self._send.seal(_nonce(self._send_iv, self._send_count), plaintext, _AAD)
        self._send_count += 1
        return codec.encode(Record(ciphertext=ct))

    def open(self, data: bytes) -> bytes:
        """Decrypt the next record; anything but exactly the next record breaks the channel."""
        if self.broken:
            raise ChannelError("the channel is closed after an error", code=WireCode.CHANNEL_CLOSED)
        try:
            record = codec.decode_as(data, Record)
            if self._recv_count >= MAX_RECORDS:
                raise ChannelError("too many records on one channel", code=WireCode.RECORD_LIMIT)
            plain = self._recv.open(
                _nonce(self._recv_iv, self._recv_count), record.ciphertext, _AAD
            )
        except AuthenticationFailed:
            self.broken = True
            raise ChannelError(
                "record replayed, reordered or modified", code=WireCode.BAD_RECORD
            ) from None
        except ProtocolError:
            self.broken = True
            raise
        self._recv_count += 1
        return plain
