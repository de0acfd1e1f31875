"""The one exception tree of tether; every library error is translated into it at the boundary.

    TetherError                      anything tether refuses or cannot do
    ├── ProtocolError                the peer sent something we refuse (remote fault)
    │   ├── MalformedMessage         bytes that do not decode, break the schema or are too big
    │   ├── UnsupportedVersion       a protocol version we do not speak
    │   ├── UnexpectedMessage        a well-formed message that is not allowed in this state
    │   ├── AuthenticationFailed     a signature, MAC or AEAD check failed, or the key is unknown
    │   ├── ChannelError             a replayed, reordered, truncated or modified record
    │   ├── PairingError             wrong code, expired or used code, pairing locked
    │   └── PeerError                the peer told us it refused (carries its code and sentence)
    ├── LocalProtocolError           the caller used a state machine wrongly (a bug in our code)
    ├── StorageError                 persisted state could not be read or written
    ├── TransportError               the bytes did not get through (may_have_succeeded, temporary)
    ├── CloudError                   the server refused a request (its HTTP status and sentence)
    └── UsageError                   the user asked for something that cannot be done as asked

Every ProtocolError has a stable machine-readable ``code`` (used in audit entries and on the
wire in ``Error`` messages) and a sentence a person can act on.
"""

from __future__ import annotations


class TetherError(Exception):
    """Base class of every error tether raises on purpose."""

    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ProtocolError(TetherError):
    """The peer sent something we refuse; the connection cannot go on."""

    code = "protocol_error"


class MalformedMessage(ProtocolError):
    """Bytes that are not a valid tether message."""

    code = "malformed"


class UnsupportedVersion(ProtocolError):
    """A message in a protocol version this implementation does not speak."""

    code = "unsupported_version"


class UnexpectedMessage(ProtocolError):
    """A valid message that is not allowed in the current state."""

    code = "unexpected_message"


class AuthenticationFailed(ProtocolError):
    """A signature, MAC or AEAD check failed, or the presented key is unknown."""

    code = "authentication_failed"


class ChannelError(ProtocolError):
    """A secure-channel record was replayed, reordered, truncated or modified."""

    code = "channel_error"


class PairingError(ProtocolError):
    """Owner pairing failed: wrong, expired or used code, or pairing is locked."""

    code = "pairing_failed"


class PeerError(ProtocolError):
    """The peer refused and said why in an ``Error`` message."""

    code = "peer_error"


class LocalProtocolError(TetherError):
    """A state machine was driven wrongly by its caller: a bug in the calling code."""

    code = "local_protocol_error"


class StorageError(TetherError):
    """Persisted state could not be read or written."""

    code = "storage_error"


class TransportError(TetherError):
    """Bytes did not get through; says whether the command may have run and if a retry helps."""

    code = "transport_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        may_have_succeeded: bool = False,
        temporary: bool = True,
    ) -> None:
        super().__init__(message, code=code)
        self.may_have_succeeded = may_have_succeeded
        self.temporary = temporary


class CloudError(TetherError):
    """The server refused a request; ``status`` is its HTTP status, the message its sentence."""

    code = "cloud_refused"

    def __init__(self, message: str, *, status: int, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.status = status


class UsageError(TetherError):
    """The user asked for something that cannot be done as asked."""

    code = "usage_error"
