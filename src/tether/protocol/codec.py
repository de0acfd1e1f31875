"""The one schema language of tether: wire messages and every signed object, declared once.

Messages and the objects inside COSE_Sign1 payloads (grants, revocations, remote commands,
results, receipts, states, bundles) are frozen dataclasses whose fields say how each is carried:
:func:`message` declares a wire message, :func:`shape` a map with integer or text keys that may
nest (:func:`nested`) and hold arrays (:func:`array`) and ids as hex text (:func:`hexid`).
:func:`decode` and :func:`load` are the only decoders: each input is decoded once, into a typed
value, and the fuzz tests aim at them.

Wire form (docs/protocol.md §2): ``[version, type, {key: value, ...}]`` encoded as RFC 8949
core deterministic CBOR. Decoding is strict: the input must be exactly the deterministic encoding of
what it decodes to (this rejects trailing bytes, indefinite lengths, non-shortest integers, unsorted
or duplicate keys), every field must have its declared CBOR type and size, unknown fields and
unknown message types are refused. Every failure is a :class:`MalformedMessage` (or
:class:`UnsupportedVersion`), never another exception.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar, dataclass_transform

import cbor2

from tether.errors import MalformedMessage, UnsupportedVersion

PROTOCOL_VERSION = 2
#: No tether message comes close; the limit bounds the work a hostile peer can cause.
MAX_MESSAGE_SIZE = 64 * 1024
_MAX_TEXT = 1024
_MAX_SIGNALS = 64
_HEX = frozenset("0123456789abcdef")


class Kind(enum.Enum):
    """The CBOR shape a field must have."""

    BYTES = "bstr"
    UINT = "uint"
    TEXT = "tstr"
    BOOL = "bool"
    SIGNALS = "{tstr: scalar}"
    HEX = "tstr (hex of a fixed-size id)"
    ARRAY = "[item]"
    SHAPE = "{declared map}"


@dataclasses.dataclass(frozen=True, slots=True)
class FieldSpec:
    """How one dataclass field is carried on the wire."""

    key: int | str
    kind: Kind
    optional: bool = False
    size: int | None = None
    max_size: int | None = None
    max_value: int = 2**64 - 1
    min_value: int = 0
    min_size: int = 0
    #: ARRAY: how each item is carried; SHAPE: the declared class of the nested map.
    item: FieldSpec | None = None
    shape: type | None = None


_REQUIRED: Any = object()


def _field(spec: FieldSpec, default: None) -> Any:
    meta = {"wire": dataclasses.replace(spec, optional=default is None)}
    if default is None:
        return dataclasses.field(default=None, metadata=meta)
    return dataclasses.field(metadata=meta)


Key = int | str


def bstr(
    key: Key, *, size: int | None = None, max_size: int = 4096, default: None = _REQUIRED
) -> Any:
    """A byte-string field, of exactly ``size`` bytes when given."""
    return _field(FieldSpec(key, Kind.BYTES, size=size, max_size=max_size), default)


def uint(
    key: Key, *, min_value: int = 0, max_value: int = 2**64 - 1, default: None = _REQUIRED
) -> Any:
    """An unsigned integer field, from ``min_value`` to ``max_value``."""
    return _field(FieldSpec(key, Kind.UINT, min_value=min_value, max_value=max_value), default)


def tstr(key: Key, *, max_size: int = _MAX_TEXT, default: None = _REQUIRED) -> Any:
    """A UTF-8 text field of at most ``max_size`` bytes."""
    return _field(FieldSpec(key, Kind.TEXT, max_size=max_size), default)


def boolean(key: Key, *, default: None = _REQUIRED) -> Any:
    """A true/false field."""
    return _field(FieldSpec(key, Kind.BOOL), default)


def signals(key: Key, *, default: None = _REQUIRED) -> Any:
    """A map of VSS signal names to scalar values (bool, int, finite float, text)."""
    return _field(FieldSpec(key, Kind.SIGNALS, max_size=_MAX_SIGNALS), default)


def hexid(key: Key, *, size: int, default: None = _REQUIRED) -> Any:
    """An id of ``size`` bytes carried as lower-case hex text (as a CWT's StringOrURI claims)."""
    return _field(FieldSpec(key, Kind.HEX, size=size), default)


def array(
    key: Key, item: FieldSpec, *, min_size: int = 0, max_size: int, default: None = _REQUIRED
) -> Any:
    """An array of ``min_size`` to ``max_size`` items, each carried as ``item`` says."""
    spec = FieldSpec(key, Kind.ARRAY, min_size=min_size, max_size=max_size, item=item)
    return _field(spec, default)


def nested(key: Key, shape_class: type, *, default: None = _REQUIRED) -> Any:
    """A map declared by ``shape_class`` (a :func:`shape`), nested inside this one."""
    return _field(FieldSpec(key, Kind.SHAPE, shape=shape_class), default)


def item_bytes(*, size: int | None = None, max_size: int = 4096) -> FieldSpec:
    """How each item of an :func:`array` of byte strings is carried."""
    return FieldSpec(0, Kind.BYTES, size=size, max_size=max_size)


def item_uint(*, max_value: int = 2**64 - 1) -> FieldSpec:
    """How each item of an :func:`array` of unsigned integers is carried."""
    return FieldSpec(0, Kind.UINT, max_value=max_value)


def item_text(*, max_size: int = _MAX_TEXT) -> FieldSpec:
    """How each item of an :func:`array` of texts is carried."""
    return FieldSpec(0, Kind.TEXT, max_size=max_size)


def item_shape(shape_class: type) -> FieldSpec:
    """How each item of an :func:`array` of declared maps is carried."""
    return FieldSpec(0, Kind.SHAPE, shape=shape_class)


class Message:
    """Base of every wire message; subclasses are made by :func:`message`."""

    TYPE: ClassVar[int]
    _SPECS: ClassVar[tuple[tuple[str, FieldSpec], ...]]
    #: Only maps with text keys and floats need cbor2's (slower) canonical mode; every other
    #: message is deterministic as built, because fields are emitted in ascending key order.
    _CANONICAL: ClassVar[bool]
    _ENCODERS: ClassVar[tuple[tuple[str, int, Callable[[Any], Any] | None], ...]]
    _KEYS: ClassVar[frozenset[int]]

    __slots__ = ()


M = TypeVar("M", bound=Message)
_REGISTRY: dict[int, type[Message]] = {}


@dataclass_transform(
    frozen_default=True,
    kw_only_default=True,
    field_specifiers=(bstr, uint, tstr, boolean, signals),
)
def message(type_id: int) -> Callable[[type[M]], type[M]]:
    """Class decorator: make a frozen message dataclass and register its wire type number."""

    def register(cls: type[M]) -> type[M]:
        if type_id in _REGISTRY:
            raise ValueError(f"message type {type_id} registered twice")
        made = dataclasses.dataclass(frozen=True, slots=True, kw_only=True)(cls)
        specs = _collect(made)
        if not all(type(spec.key) is int and spec.key >= 0 for _, spec in specs):
            raise ValueError(f"{cls.__name__}: a message's field keys are unsigned integers")
        if any(spec.kind in (Kind.HEX, Kind.ARRAY, Kind.SHAPE) for _, spec in specs):
            raise ValueError(f"{cls.__name__}: a message's fields are scalars, bytes or signals")
        made.TYPE = type_id
        made._SPECS = tuple(sorted(specs, key=lambda item: int(item[1].key)))
        made._CANONICAL = any(spec.kind is Kind.SIGNALS for _, spec in specs)
        made._ENCODERS = tuple(
            (name, spec.key, _CONVERTERS.get(spec.kind))  # type: ignore[misc]
            for name, spec in made._SPECS
        )
        made._KEYS = frozenset(spec.key for _, spec in specs)  # type: ignore[misc]
        _REGISTRY[type_id] = made
        return made

    return register


def _collect(made: type) -> list[tuple[str, FieldSpec]]:
    specs = []
    keys: set[Key] = set()
    for f in dataclasses.fields(made):
        spec = f.metadata["wire"]
        if spec.key in keys:
            raise ValueError(f"{made.__name__}: field key {spec.key!r} used twice")
        keys.add(spec.key)
        specs.append((f.name, spec))
    return specs


class Shape:
    """Base of every declared map (a signed object's payload, or a map inside one)."""

    _FIELDS: ClassVar[tuple[tuple[str, FieldSpec], ...]]
    _NAMES: ClassVar[frozenset[Key]]

    __slots__ = ()


SH = TypeVar("SH", bound=Shape)


@dataclass_transform(
    frozen_default=True,
    kw_only_default=True,
    field_specifiers=(bstr, uint, tstr, boolean, signals, hexid, array, nested),
)
def shape(cls: type[SH]) -> type[SH]:
    """Class decorator: a frozen dataclass declaring a CBOR map with integer or text keys."""
    made = dataclasses.dataclass(frozen=True, slots=True, kw_only=True)(cls)
    specs = _collect(made)
    if not all(type(spec.key) in (int, str) for _, spec in specs):
        raise ValueError(f"{cls.__name__}: keys are integers or text")
    made._FIELDS = tuple(specs)
    made._NAMES = frozenset(spec.key for _, spec in specs)
    return made


_CONVERTERS: dict[Kind, Callable[[Any], Any]] = {
    Kind.SIGNALS: dict,
}


def encode(msg: Message) -> bytes:
    """Encode a message as deterministic CBOR."""
    body: dict[int, Any] = {}
    for name, key, convert in msg._ENCODERS:
        value = getattr(msg, name)
        if value is not None:
            body[key] = value if convert is None else convert(value)
    return cbor2.dumps([PROTOCOL_VERSION, msg.TYPE, body], canonical=msg._CANONICAL)


def clip(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` of UTF-8, never inside a character."""
    return text.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")


def _check_size(name: str, spec: FieldSpec, length: int) -> None:
    if spec.size is not None and length != spec.size:
        raise MalformedMessage(f"field {name!r} must be {spec.size} bytes, got {length}")
    if spec.max_size is not None and length > spec.max_size:
        raise MalformedMessage(f"field {name!r} is longer than {spec.max_size}")


def _is_uint(value: Any) -> bool:
    # bool is an int subclass in Python but a different CBOR type on the wire.
    return type(value) is int and value >= 0


def _decode_value(name: str, spec: FieldSpec, value: Any) -> Any:
    kind = spec.kind
    if kind is Kind.BYTES:
        if type(value) is not bytes:
            raise MalformedMessage(f"field {name!r} must be a byte string")
        _check_size(name, spec, len(value))
        return value
    if kind is Kind.UINT:
        if not _is_uint(value) or not spec.min_value <= value <= spec.max_value:
            raise MalformedMessage(
                f"field {name!r} must be an integer from {spec.min_value} to {spec.max_value}"
            )
        return value
    if kind is Kind.TEXT:
        if type(value) is not str:
            raise MalformedMessage(f"field {name!r} must be text")
        # tstr[..n] bounds the UTF-8 encoding, as CBOR's own length does (§2), not characters.
        _check_size(name, spec, len(value.encode("utf-8")))
        return value
    if kind is Kind.BOOL:
        if type(value) is not bool:
            raise MalformedMessage(f"field {name!r} must be true or false")
        return value
    if kind is Kind.HEX:
        assert spec.size is not None
        # Checked digit by digit: bytes.fromhex would also take spaces (and a shorter id).
        if type(value) is not str or len(value) != 2 * spec.size or not _HEX.issuperset(value):
            raise MalformedMessage(f"field {name!r} must be {2 * spec.size} lower-case hex digits")
        return bytes.fromhex(value)
    if kind is Kind.ARRAY:
        assert spec.item is not None and spec.max_size is not None
        if type(value) is not list or not spec.min_size <= len(value) <= spec.max_size:
            raise MalformedMessage(
                f"field {name!r} must be an array of {spec.min_size} to {spec.max_size} items"
            )
        return tuple(_decode_value(f"{name}[]", spec.item, v) for v in value)
    if kind is Kind.SHAPE:
        assert spec.shape is not None
        return _build_shape(spec.shape, value, name)
    # Kind.SIGNALS
    if type(value) is not dict:
        raise MalformedMessage(f"field {name!r} must be a map")
    _check_size(name, spec, len(value))
    for k, v in value.items():
        if type(k) is not str or len(k) > 128:
            raise MalformedMessage(f"field {name!r} has a key that is not a short text")
        if type(v) not in (bool, int, float, str) or (type(v) is str and len(v) > 256):
            raise MalformedMessage(f"field {name!r} has a value that is not a scalar")
        if type(v) is float and not math.isfinite(v):
            raise MalformedMessage(f"field {name!r} has a value that is not a finite number")
    return dict(value)


def _load(data: bytes) -> tuple[int, dict[Any, Any]]:
    if type(data) is not bytes:
        raise MalformedMessage("a message must be bytes")
    if len(data) > MAX_MESSAGE_SIZE:
        raise MalformedMessage(f"message of {len(data)} bytes is over the {MAX_MESSAGE_SIZE} limit")
    if not data:
        raise MalformedMessage("empty message")
    try:
        obj = cbor2.loads(data)
    except Exception as exc:  # cbor2 raises many types; a peer's garbage must be ours only
        raise MalformedMessage(f"not valid CBOR: {exc.__class__.__name__}") from exc
    if type(obj) is not list or len(obj) != 3:
        raise MalformedMessage("a message is an array of version, type and fields")
    version, type_id, body = obj
    if not _is_uint(version):
        raise MalformedMessage("version must be an unsigned integer")
    if version != PROTOCOL_VERSION:
        raise UnsupportedVersion(
            f"peer speaks protocol version {version}; this side speaks {PROTOCOL_VERSION}"
        )
    if not _is_uint(type_id):
        raise MalformedMessage("type must be an unsigned integer")
    if type(body) is not dict:
        raise MalformedMessage("fields must be a map")
    if not all(type(key) is int for key in body):
        # CBOR simple values, floats or tags may compare equal to an integer key in Python.
        raise MalformedMessage("field keys must be unsigned integers")
    return type_id, body


def peek_type(data: bytes) -> type[Message]:
    """Return the message class of ``data`` (fully validated), e.g. to dispatch a first message."""
    return type(decode(data))


def decode(data: bytes) -> Message:
    """Decode and validate one message; raises :class:`MalformedMessage` on anything wrong."""
    type_id, body = _load(data)
    cls = _REGISTRY.get(type_id)
    if cls is None:
        raise MalformedMessage(f"unknown message type {type_id}")
    msg = _build(cls, body)
    # Exactly one encoding is valid: this rejects trailing bytes, indefinite lengths, non-shortest
    # integers or floats, unsorted or duplicate keys. The body holds only validated scalars here,
    # so re-encoding it is deterministic.
    ordered = body if cls._CANONICAL else dict(sorted(body.items()))
    if cbor2.dumps([PROTOCOL_VERSION, type_id, ordered], canonical=cls._CANONICAL) != data:
        raise MalformedMessage("not deterministic CBOR (or trailing bytes)")
    return msg


def decode_as(data: bytes, cls: type[M]) -> M:
    """Decode one message that must be of class ``cls``."""
    msg = decode(data)
    if not isinstance(msg, cls):
        raise MalformedMessage(f"expected {cls.__name__}, got {type(msg).__name__}")
    return msg


def _build(cls: type[M], body: Mapping[Any, Any]) -> M:
    return cls(**_fields(cls.__name__, cls._SPECS, cls._KEYS, body))


def _unknown(key: object) -> str:
    """Which key was not declared, said without repeating the peer's text: refusals are audited
    with our sentence, and nothing a peer says is stored (a number is ours to print)."""
    if type(key) is int and -(2**63) <= key < 2**64:
        return f"unknown field {key}"
    return "an unknown field"


def _fields(
    what: str,
    specs: tuple[tuple[str, FieldSpec], ...],
    keys: frozenset[Key],
    body: Mapping[Any, Any],
) -> dict[str, Any]:
    """The declared fields of one map, each checked: the one path messages and shapes share."""
    if not body.keys() <= keys:
        unknown = next(k for k in body if k not in keys)
        raise MalformedMessage(f"{what}: {_unknown(unknown)}")
    kwargs: dict[str, Any] = {}
    for name, spec in specs:
        if spec.key not in body:
            if not spec.optional:
                raise MalformedMessage(f"{what}: missing field {name!r}")
            continue
        kwargs[name] = _decode_value(name, spec, body[spec.key])
    return kwargs


def registered_types() -> dict[int, type[Message]]:
    """All message classes by wire type (for tests and the spec)."""
    return dict(_REGISTRY)


# -- declared maps: signed objects' payloads ------------------------------------------------------
def _build_shape(cls: type[SH], value: Any, what: str) -> SH:
    if type(value) is not dict:
        raise MalformedMessage(f"{what} must be a map")
    # A message's keys were checked as integers already; a shape's may be any CBOR key, and a
    # bool (an int in Python), simple value or float must never pass for one.
    for key in value:
        if type(key) not in (int, str):
            raise MalformedMessage(f"{what}: {_unknown(key)}")
    return cls(**_fields(what, cls._FIELDS, cls._NAMES, value))


def _wire_value(spec: FieldSpec, value: Any) -> Any:
    if spec.kind is Kind.HEX:
        return bytes(value).hex()
    if spec.kind is Kind.ARRAY:
        assert spec.item is not None
        return [_wire_value(spec.item, v) for v in value]
    if spec.kind is Kind.SHAPE:
        return _wire_map(value)
    if spec.kind is Kind.SIGNALS:
        return dict(value)
    return value


def _wire_map(obj: Shape) -> dict[Key, Any]:
    return {
        spec.key: _wire_value(spec, getattr(obj, name))
        for name, spec in obj._FIELDS
        if getattr(obj, name) is not None
    }


def to_map(obj: Shape) -> dict[Key, Any]:
    """A declared map as plain CBOR-ready data (e.g. to store it as JSON)."""
    return _wire_map(obj)


def from_map(cls: type[SH], value: Any, what: str) -> SH:
    """A declared map from plain data, checked as strictly as from the wire."""
    return _build_shape(cls, value, what)


def dump(obj: Shape) -> bytes:
    """The deterministic CBOR of a declared map (what a signer signs)."""
    return cbor2.dumps(_wire_map(obj), canonical=True)


def _loads(data: bytes, what: str) -> Any:
    if type(data) is not bytes or len(data) > MAX_MESSAGE_SIZE:
        raise MalformedMessage(f"{what} is not a bounded byte string")
    try:
        return cbor2.loads(data)
    except Exception as exc:  # cbor2 raises many types; a peer's garbage must be ours only
        raise MalformedMessage(f"{what} is not valid CBOR") from exc


def load(data: bytes, cls: type[SH], what: str, *, deterministic: bool = True) -> SH:
    """Decode one declared map strictly: the only decoder of every signed object's payload.

    Exactly one encoding is valid, as for messages: the value must re-encode to ``data``
    (``deterministic=False`` only for documents people pass around that nobody signs).
    """
    value = _build_shape(cls, _loads(data, what), what)
    if deterministic and dump(value) != data:
        raise MalformedMessage(f"{what} is not deterministic CBOR (or has trailing bytes)")
    return value


def load_array(
    data: bytes, item: FieldSpec, what: str, *, min_size: int = 0, max_size: int
) -> tuple[Any, ...]:
    """Decode one array of declared items (e.g. a data request's items) as strictly."""
    spec = FieldSpec(0, Kind.ARRAY, min_size=min_size, max_size=max_size, item=item)
    values = _decode_value(what, spec, _loads(data, what))
    if cbor2.dumps(_wire_value(spec, values), canonical=True) != data:
        raise MalformedMessage(f"{what} is not deterministic CBOR (or has trailing bytes)")
    return tuple(values)
