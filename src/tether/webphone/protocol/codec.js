// Messages of docs/protocol.md §2-§3: [version, type, {fields}] in deterministic CBOR, decoded
// strictly (every field's kind and size checked; exactly one valid encoding per message).

import { decode, encode, rfc8949EncodeOptions } from "cborg";

import { equal } from "./bytes.js";

export const PROTOCOL_VERSION = 2;
export const MAX_MESSAGE_SIZE = 65536;
const ID = 2 ** 32 - 1;

/**
 * A field: [name, kind, exact size or 0, max size or max value, optional].
 * @typedef {[string, "bytes" | "text" | "uint" | "bool" | "signals", number, number, boolean]} Field
 * @typedef {{ name: string, fields: Map<number, Field> }} Schema
 * @typedef {{ type: number, name: string, fields: Map<number, unknown> }} Message
 */

/** @param {string} name @param {Array<[number, Field]>} fields @returns {Schema} */
function schema(name, fields) {
  return { name, fields: new Map(fields) };
}

/** @param {string} n @param {number} size @returns {Field} */
const bytes = (n, size) => [n, "bytes", size, size, false];
/** @param {string} n @param {number} max @returns {Field} */
const upTo = (n, max) => [n, "bytes", 0, max, false];
/** @param {string} n @param {number} max @param {boolean} [optional] @returns {Field} */
const text = (n, max, optional = false) => [n, "text", 0, max, optional];
/** @param {string} n @param {number} max @returns {Field} */
const uint = (n, max) => [n, "uint", 0, max, false];
/** @param {string} n @returns {Field} */
const bool = (n) => [n, "bool", 0, 0, false];

/** §3's table. */
export const SCHEMAS = new Map([
  [10, schema("PairRequest", [[1, bytes("share", 65)]])],
  [11, schema("PairChallenge", [[1, bytes("share", 65)]])],
  [12, schema("PairConfirm", [[1, bytes("confirm", 32)], [2, upTo("sealed", 2048)]])],
  [13, schema("PairAccept", [[1, bytes("confirm", 32)], [2, upTo("sealed", 2048)]])],
  [20, schema("PhoneEnrollment", [[1, bytes("public_key", 65)], [2, text("name", 64)], [3, bytes("signature", 64)]])],
  [21, schema("VehicleIdentity", [[1, bytes("public_key", 65)], [2, text("name", 64)], [3, bytes("signature", 64)]])],
  [30, schema("StandardHello", [[1, bytes("ephemeral", 65)], [2, bytes("nonce", 16)]])],
  [31, schema("VehicleAuth", [[1, bytes("ephemeral", 65)], [2, bytes("nonce", 16)], [3, upTo("sealed", 2048)]])],
  [32, schema("PhoneAuth", [[1, upTo("sealed", 2048)]])],
  [33, schema("Finished", [[1, bytes("mac", 32)]])],
  [36, schema("FastProof", [[1, bytes("nonce", 16)], [2, bytes("cryptogram", 32)]])],
  [37, schema("VehicleHello", [[1, bytes("nonce", 16)]])],
  [38, schema("Fallback", [])],
  [50, schema("Record", [[1, upTo("ciphertext", 60000)]])],
  [60, schema("Error", [[1, text("code", 64)], [2, text("message", 512)]])],
  [70, schema("CommandRequest", [[1, uint("request_id", ID)], [2, text("command", 32)]])],
  [
    71,
    schema("CommandResult", [
      [1, uint("request_id", ID)],
      [2, bool("ok")],
      [3, text("reason", 64, true)],
      [4, text("message", 512)],
      [5, ["state", "signals", 0, 64, true]],
    ]),
  ],
  [72, schema("Close", [])],
  [73, schema("RevocationRequest", [[1, uint("request_id", ID)], [2, upTo("revocation", 4096)]])],
  [
    74,
    schema("RevocationResult", [
      [1, uint("request_id", ID)],
      [2, bool("ok")],
      [3, uint("seq", Number.MAX_SAFE_INTEGER)],
      [4, text("reason", 64, true)],
      [5, text("message", 512)],
    ]),
  ],
  [
    75,
    schema("DataRequest", [
      [1, uint("request_id", ID)],
      [2, upTo("items", 4096)],
      [3, text("purpose", 128)],
      [4, bool("retain")],
    ]),
  ],
  [76, schema("DataResponse", [[1, uint("request_id", ID)], [2, upTo("granted", 60000)], [3, upTo("denied", 1024)]])],
  [77, schema("RangingRequest", [[1, uint("request_id", ID)], [2, bytes("nonce", 16)], [3, uint("anchors", 16)]])],
  [78, schema("RangingReady", [[1, uint("request_id", ID)], [2, uint("reply_ns", 1e9)]])],
]);

/** A message the codec refuses, with the §10 code. */
export class ProtocolError extends Error {
  /** @param {string} code @param {string} message */
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/** @param {string} reason @param {string} [code] @returns {never} */
function refuse(reason, code = "malformed") {
  throw new ProtocolError(code, reason);
}

/** @param {string} name @param {Field} spec @param {unknown} value */
function check(name, spec, value) {
  const [, kind, size, max] = spec;
  if (kind === "bytes") {
    if (!(value instanceof Uint8Array)) refuse(`field ${name} must be a byte string`);
    if ((size && value.length !== size) || value.length > max) refuse(`field ${name} has the wrong size`);
  } else if (kind === "text") {
    if (typeof value !== "string") refuse(`field ${name} must be text`);
    if (new TextEncoder().encode(value).length > max) refuse(`field ${name} is longer than ${max}`);
  } else if (kind === "uint") {
    if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > max) {
      refuse(`field ${name} must be an integer from 0 to ${max}`);
    }
  } else if (kind === "bool") {
    if (typeof value !== "boolean") refuse(`field ${name} must be true or false`);
  } else {
    if (!(value instanceof Map) || value.size > max) refuse(`field ${name} must be a map`);
    for (const [k, v] of value) {
      const scalar = typeof v === "boolean" || typeof v === "number" || typeof v === "string";
      if (typeof k !== "string" || !scalar) refuse(`field ${name} holds a value that is not a scalar`);
    }
  }
}

/** Encode a message. @param {number} type @param {Map<number, unknown>} fields @returns {Uint8Array} */
export function encodeMessage(type, fields) {
  const known = SCHEMAS.get(type);
  if (!known) throw new TypeError(`no message type ${type}`);
  for (const [key, value] of fields) {
    const spec = known.fields.get(key);
    if (!spec) throw new TypeError(`${known.name} has no field ${key}`);
    check(spec[0], spec, value);
  }
  return encode([PROTOCOL_VERSION, type, fields], rfc8949EncodeOptions);
}

/** Decode and validate one message; refuses anything but its one valid encoding. */
export function decodeMessage(/** @type {Uint8Array} */ data) {
  if (data.length > MAX_MESSAGE_SIZE) refuse("message too large");
  /** @type {unknown} */
  let item;
  try {
    item = decode(data, { strict: true, rejectDuplicateMapKeys: true, useMaps: true });
  } catch {
    return refuse("not valid CBOR");
  }
  if (!Array.isArray(item) || item.length !== 3) refuse("a message is [version, type, fields]");
  const [version, type, fields] = /** @type {[unknown, unknown, unknown]} */ (item);
  if (typeof version !== "number" || version !== PROTOCOL_VERSION) {
    refuse(`protocol version ${String(version)} is not supported`, "unsupported_version");
  }
  const known = typeof type === "number" ? SCHEMAS.get(type) : undefined;
  if (!known || typeof type !== "number") return refuse(`unknown message type ${String(type)}`);
  if (!(fields instanceof Map)) return refuse("fields must be a map");
  for (const [key, value] of fields) {
    const spec = typeof key === "number" ? known.fields.get(key) : undefined;
    if (!spec) refuse(`${known.name} has no field ${String(key)}`);
    check(spec[0], spec, value);
  }
  for (const [key, spec] of known.fields) {
    if (!fields.has(key) && !spec[4]) refuse(`${known.name} lacks its field ${spec[0]}`);
  }
  // One valid encoding per message: re-encoding must give the bytes back. A JavaScript number
  // cannot remember that 80.0 was a float, so a CommandResult's state (the only place floats may
  // appear, and only ever inside an authenticated record) is held to this without its floats.
  const again = encode(item, rfc8949EncodeOptions);
  const floats = type === 71 && fields.has(5);
  if (!floats && !equal(again, data)) refuse("not deterministic CBOR (or trailing bytes)");
  return /** @type {Message} */ ({ type, name: known.name, fields });
}

/**
 * One field of a decoded message, by name, as the schema types it.
 * @template T @param {Message} msg @param {number} key @returns {T}
 */
export function field(msg, key) {
  return /** @type {T} */ (msg.fields.get(key));
}
