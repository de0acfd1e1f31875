// Byte helpers shared by the protocol modules: hex, concatenation, constant-time equality.

/** @param {string} hex @returns {Uint8Array} */
export function fromHex(hex) {
  if (hex.length % 2 !== 0 || /[^0-9a-f]/i.test(hex)) {
    throw new TypeError("not hex");
  }
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i += 1) {
    out[i] = Number.parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  }
  return out;
}

/** @param {Uint8Array} bytes @returns {string} */
export function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** @param {...Uint8Array} parts @returns {Uint8Array} */
export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** ASCII text as bytes (labels, identities). @param {string} text @returns {Uint8Array} */
export function ascii(text) {
  return new TextEncoder().encode(text);
}

/**
 * Equal in constant time for equal lengths (MACs, confirmations): no early exit on a mismatch.
 * @param {Uint8Array} a @param {Uint8Array} b @returns {boolean}
 */
export function equal(a, b) {
  if (a.length !== b.length) {
    return false;
  }
  let diff = 0;
  for (let i = 0; i < a.length; i += 1) {
    diff |= (a[i] ?? 0) ^ (b[i] ?? 0);
  }
  return diff === 0;
}

/** A big-endian unsigned integer of ``bytes``. @param {Uint8Array} bytes @returns {bigint} */
export function toBigInt(bytes) {
  return bytes.length === 0 ? 0n : BigInt(`0x${toHex(bytes)}`);
}

/** ``value`` as ``size`` big-endian bytes. @param {bigint} value @param {number} size */
export function fromBigInt(value, size) {
  return fromHex(value.toString(16).padStart(2 * size, "0"));
}

/** RFC 9383's length prefix: 8 bytes little-endian, then the bytes. @param {Uint8Array} data */
export function len8(data) {
  const prefix = new Uint8Array(8);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(data.length), true);
  return concat(prefix, data);
}

/** Standard base64 with padding (RFC 9530 digests, RFC 9421 signatures). @param {Uint8Array} bytes */
export function b64(bytes) {
  let text = "";
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text);
}

/** base64url without padding (links, JWK, the server's JSON). @param {Uint8Array} bytes */
export function b64url(bytes) {
  return b64(bytes).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

/** The bytes of base64url text (padding optional); throws a TypeError if it is not. @param {string} text */
export function unb64url(text) {
  const plain = text.replaceAll("-", "+").replaceAll("_", "/");
  try {
    return Uint8Array.from(atob(plain + "=".repeat((4 - (plain.length % 4)) % 4)), (c) => c.charCodeAt(0));
  } catch {
    throw new TypeError("not base64url");
  }
}
