"""The one exception tree of tether; every library error is translated into it at the boundary.

    TetherError                      anything tether refuses or cannot do
    ├── ProtocolError                the peer sent something we refuse (remote fault)
    │   ├── MalformedMessage         bytes that do not decode, break the schema or are too big
    │   ├── UnsupportedVersion       a protocol version we do not speak
    │   ├── UnexpectedMessage        a well-formed message that is not allowed in this state
    │   ├── AuthenticationFailed     a signature, MAC or AEAD check failed, or the key is unknown
    │   │   └── SignatureRefused     an HTTP request's RFC 9421 signature is missing or wrong
    │   ├── ChannelError             a replayed, reordered, truncated or modified record
    │   ├── PairingError             wrong code, expired or used code, pairing locked
    │   ├── PeerError                the peer told us it refused (carries its code and sentence)
    │   └── GrantError               a grant, chain or revocation is refused (§9)
    │       └── RemoteError          a remote command, result, receipt or state is refused (§14)
    ├── LocalProtocolError           the caller used a state machine wrongly (a bug in our code)
    ├── StorageError                 persisted state could not be read or written
    ├── TransportError               the bytes did not get through (may_have_succeeded, temporary)
    │   ├── TransportClosed          the peer closed the connection: nothing more will arrive
    │   └── BadFrame                 a frame the transport cannot carry (§2.1)
    │       └── FrameTooLarge        a frame over the size limit
    ├── CloudError                   the server refused a request (its HTTP status and sentence)
    ├── BodyFault                    the car's body could not carry out a command
    └── UsageError                   the user asked for something that cannot be done as asked
        ├── PassphraseNeeded         the wallet is locked and no passphrase was given
        └── WrongPassphrase          the passphrase given does not open the wallet

Every error has a machine-readable ``code`` and a sentence a person can act on. Codes are enums,
never free text: a :class:`WireCode` may cross the wire in an ``Error`` message (the set
docs/protocol.md §10 lists, checked by a test), a :class:`LocalCode` names what went wrong on
this side only. Code branches on these members, not on strings or message text.
"""

from __future__ import annotations

import enum


class WireCode(enum.StrEnum):
    """The closed set of codes an ``Error`` message may carry (docs/protocol.md §10).

    A peer's code is parsed into this set before it is counted, stored or shown: anything else
    becomes :attr:`UNKNOWN`, so a stranger can neither write into the audit log nor grow a counter.
    """

    UNKNOWN = "unknown"
    PROTOCOL_ERROR = "protocol_error"
    MALFORMED = "malformed"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNEXPECTED_MESSAGE = "unexpected_message"
    AUTHENTICATION_FAILED = "authentication_failed"
    BAD_SIGNATURE = "bad_signature"
    BAD_TAG = "bad_tag"
    BAD_FINISHED = "bad_finished"
    UNKNOWN_KEY = "unknown_key"
    PAIRING_FAILED = "pairing_failed"
    BAD_PAKE_MESSAGE = "bad_pake_message"
    WRONG_CODE = "wrong_code"
    NO_CODE = "no_code"
    CODE_EXPIRED = "code_expired"
    PAIRING_LOCKED = "pairing_locked"
    PAIRING_BUSY = "pairing_busy"
    INVALID_CODE = "invalid_code"
    BAD_CONFIRMATION = "bad_confirmation"
    CHANNEL_ERROR = "channel_error"
    BAD_RECORD = "bad_record"
    RECORD_LIMIT = "record_limit"
    CHANNEL_CLOSED = "channel_closed"
    TRUNCATED = "truncated"
    PEER_ERROR = "peer_error"
    GRANT_REFUSED = "grant_refused"
    GRANT_MALFORMED = "grant_malformed"
    GRANT_BAD_SIGNATURE = "grant_bad_signature"
    GRANT_BAD_RIGHTS = "grant_bad_rights"
    GRANT_BAD_WINDOW = "grant_bad_window"
    GRANT_BROKEN_CHAIN = "grant_broken_chain"
    GRANT_EXPIRED = "grant_expired"
    GRANT_NOT_YET_VALID = "grant_not_yet_valid"
    GRANT_KEY_MISMATCH = "grant_key_mismatch"
    GRANT_NO_SHARE_RIGHT = "grant_no_share_right"
    GRANT_REVOKED = "grant_revoked"
    GRANT_TOO_DEEP = "grant_too_deep"
    GRANT_UNKNOWN_ISSUER = "grant_unknown_issuer"
    GRANT_WIDENS_LIMITS = "grant_widens_limits"
    GRANT_WIDENS_RIGHTS = "grant_widens_rights"
    GRANT_WIDENS_WINDOW = "grant_widens_window"
    GRANT_WRONG_VEHICLE = "grant_wrong_vehicle"
    GRANT_ROLE_CONFLICT = "grant_role_conflict"
    REVOCATION_MALFORMED = "revocation_malformed"
    REVOCATION_BAD_SIGNATURE = "revocation_bad_signature"
    REVOCATION_REPLAYED = "revocation_replayed"
    REVOCATION_UNKNOWN_ISSUER = "revocation_unknown_issuer"
    REVOCATION_WRONG_VEHICLE = "revocation_wrong_vehicle"
    COMMAND_MALFORMED = "command_malformed"
    COMMAND_BAD_SIGNATURE = "command_bad_signature"
    COMMAND_EXPIRED = "command_expired"
    COMMAND_REPLAYED = "command_replayed"
    COMMAND_WRONG_VEHICLE = "command_wrong_vehicle"
    REMOTE_REFUSED = "remote_refused"
    REMOTE_NOT_ALLOWED = "remote_not_allowed"
    RESULT_MALFORMED = "result_malformed"
    RESULT_MISMATCH = "result_mismatch"
    RECEIPT_MALFORMED = "receipt_malformed"
    RECEIPT_MISMATCH = "receipt_mismatch"
    STATE_MALFORMED = "state_malformed"
    STATE_MISMATCH = "state_mismatch"
    RESULT_BAD_SIGNATURE = "result_bad_signature"
    RECEIPT_BAD_SIGNATURE = "receipt_bad_signature"
    STATE_BAD_SIGNATURE = "state_bad_signature"
    IMPOSSIBLE_TIMING = "impossible_timing"
    WRONG_ANSWER = "wrong_answer"
    WRONG_ROUND_COUNT = "wrong_round_count"
    UNKNOWN_COMMAND = "unknown_command"
    BODY_FAULT = "body_fault"
    TOO_MANY_CONNECTIONS = "too_many_connections"

    @classmethod
    def parse(cls, text: object) -> WireCode:
        """The code ``text`` names, or :attr:`UNKNOWN` (never the peer's own string)."""
        if isinstance(text, str) and text in cls._value2member_map_:
            return cls(text)
        return cls.UNKNOWN


class LocalCode(enum.StrEnum):
    """Codes that never cross the wire: what went wrong on this side, for exit codes and logs."""

    ERROR = "error"
    LOCAL_PROTOCOL_ERROR = "local_protocol_error"
    STORAGE_ERROR = "storage_error"
    MISSING = "missing"
    WALLET_CORRUPT = "wallet_corrupt"
    TRANSPORT_ERROR = "transport_error"
    CLOSED = "closed"
    BAD_FRAME = "bad_frame"
    FRAME_TOO_LARGE = "frame_too_large"
    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    NO_ANSWER = "no_answer"
    NO_KEY = "no_key"
    CLOUD_REFUSED = "cloud_refused"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    CLOUD_TIMEOUT = "cloud_timeout"
    CLOUD_UNREACHABLE = "cloud_unreachable"
    CAR_OFFLINE = "car_offline"
    BAD_REQUEST_SIGNATURE = "bad_request_signature"
    USAGE_ERROR = "usage_error"


#: Every code an error may carry.
Code = WireCode | LocalCode


class TetherError(Exception):
    """Base class of every error tether raises on purpose."""

    code: Code = LocalCode.ERROR

    def __init__(self, message: str, *, code: Code | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ProtocolError(TetherError):
    """The peer sent something we refuse; the connection cannot go on."""

    code: Code = WireCode.PROTOCOL_ERROR


class MalformedMessage(ProtocolError):
    """Bytes that are not a valid tether message."""

    code: Code = WireCode.MALFORMED


class UnsupportedVersion(ProtocolError):
    """A message in a protocol version this implementation does not speak."""

    code: Code = WireCode.UNSUPPORTED_VERSION


class UnexpectedMessage(ProtocolError):
    """A valid message that is not allowed in the current state."""

    code: Code = WireCode.UNEXPECTED_MESSAGE


class AuthenticationFailed(ProtocolError):
    """A signature, MAC or AEAD check failed, or the presented key is unknown."""

    code: Code = WireCode.AUTHENTICATION_FAILED


class ChannelError(ProtocolError):
    """A secure-channel record was replayed, reordered, truncated or modified."""

    code: Code = WireCode.CHANNEL_ERROR


class PairingError(ProtocolError):
    """Owner pairing failed: wrong, expired or used code, or pairing is locked."""

    code: Code = WireCode.PAIRING_FAILED


class PeerError(ProtocolError):
    """The peer refused and said why in an ``Error`` message."""

    code: Code = WireCode.PEER_ERROR


class LocalProtocolError(TetherError):
    """A state machine was driven wrongly by its caller: a bug in the calling code."""

    code: Code = LocalCode.LOCAL_PROTOCOL_ERROR


class StorageError(TetherError):
    """Persisted state could not be read or written."""

    code: Code = LocalCode.STORAGE_ERROR


class TransportError(TetherError):
    """Bytes did not get through; says whether the command may have run and if a retry helps."""

    code: Code = LocalCode.TRANSPORT_ERROR

    def __init__(
        self,
        message: str,
        *,
        code: Code | None = None,
        may_have_succeeded: bool = False,
        temporary: bool = True,
    ) -> None:
        super().__init__(message, code=code)
        self.may_have_succeeded = may_have_succeeded
        self.temporary = temporary


class CloudError(TetherError):
    """The server refused a request; ``status`` is its HTTP status, the message its sentence."""

    code: Code = LocalCode.CLOUD_REFUSED

    def __init__(self, message: str, *, status: int, code: Code | None = None) -> None:
        super().__init__(message, code=code)
        self.status = status


class UsageError(TetherError):
    """The user asked for something that cannot be done as asked."""

    code: Code = LocalCode.USAGE_ERROR


class PassphraseNeeded(UsageError):
    """The wallet is locked with a passphrase and none was given (a terminal may ask for one)."""


class WrongPassphrase(UsageError):
    """The passphrase given does not open the wallet (a terminal may ask again)."""


class GrantError(ProtocolError):
    """A grant, chain or revocation is refused; ``code`` says why (audited, shown to the user)."""

    code: Code = WireCode.GRANT_REFUSED


class RemoteError(GrantError):
    """A remote command, result or receipt is refused; ``code`` says why."""

    code: Code = WireCode.REMOTE_REFUSED


class SignatureRefused(AuthenticationFailed):
    """A request's signature is missing, malformed, stale, replayed or does not verify."""

    code: Code = LocalCode.BAD_REQUEST_SIGNATURE


class TransportClosed(TransportError):
    """The peer closed the connection (or it was cut): nothing more will arrive."""

    code: Code = LocalCode.CLOSED


class BadFrame(TransportError):
    """A frame the transport cannot carry as a message (docs/protocol.md §2.1): refused."""

    code: Code = LocalCode.BAD_FRAME


class FrameTooLarge(BadFrame):
    """A frame announced or sent a size over :data:`MAX_FRAME`."""

    code: Code = LocalCode.FRAME_TOO_LARGE


class BodyFault(TetherError):
    """The body could not carry out a command (bus down, actuator fault)."""

    code: Code = WireCode.BODY_FAULT


_PRINTABLE_LIMIT = 200


def peer_text(text: object, limit: int = _PRINTABLE_LIMIT) -> str:
    """A peer's sentence made safe to show: printable characters only, bounded in length."""
    if not isinstance(text, str):
        return ""
    clean = "".join(ch if ch.isprintable() else "\N{REPLACEMENT CHARACTER}" for ch in text)
    return clean if len(clean) <= limit else clean[: limit - 1] + "\N{HORIZONTAL ELLIPSIS}"
