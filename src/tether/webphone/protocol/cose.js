// COSE_Sign1 (RFC 9052) with ES256, as docs/protocol.md §9.1 and §14 use it: protected header
// {1: -7}, the signer's key id as kid, an empty external AAD, a deterministic CBOR payload.

import { Tagged, decode, encode, rfc8949EncodeOptions } from "cborg";

import { equal } from "./bytes.js";
import * as crypto from "./crypto.js";
import { ProtocolError } from "./codec.js";

const PROTECTED = new Uint8Array([0xa1, 0x01, 0x26]); // {1: -7}

/** @param {Uint8Array} protectedHeader @param {Uint8Array} payload */
function sigStructure(protectedHeader, payload) {
  return encode(["Signature1", protectedHeader, new Uint8Array(), payload], rfc8949EncodeOptions);
}

/**
 * Sign ``claims`` (a map with text keys, or a Map with integer and text keys) with a
 * non-extractable key.
 * @param {CryptoKey} key @param {Uint8Array} kid
 * @param {Record<string, unknown> | Map<number | string, unknown>} claims
 * @returns {Promise<Uint8Array>}
 */
export async function sign1(key, kid, claims) {
  const payload = encode(claims, rfc8949EncodeOptions);
  const signature = await crypto.sign(key, sigStructure(PROTECTED, payload));
  return encode(new Tagged(18, [PROTECTED, new Map([[4, kid]]), payload, signature]), rfc8949EncodeOptions);
}

/**
 * Check a COSE_Sign1 under ``publicKey`` and return its claims; a ProtocolError otherwise.
 * @param {Uint8Array} data @param {Uint8Array} publicKey @returns {Promise<Record<string, unknown>>}
 */
export async function verify1(data, publicKey) {
  /** @type {unknown[]} */
  const tags = [];
  tags[18] = (/** @type {() => unknown} */ inner) => ({ sign1: inner() });
  let parts;
  try {
    const item = /** @type {{ sign1: unknown }} */ (decode(data, { tags: /** @type {any} */ (tags), useMaps: true }));
    parts = item.sign1;
  } catch {
    throw new ProtocolError("malformed", "not a COSE_Sign1");
  }
  if (!Array.isArray(parts) || parts.length !== 4) throw new ProtocolError("malformed", "not a COSE_Sign1");
  const [protectedHeader, unprotected, payload, signature] = parts;
  const kid = unprotected instanceof Map ? unprotected.get(4) : undefined;
  if (!(protectedHeader instanceof Uint8Array) || !equal(protectedHeader, PROTECTED)) {
    throw new ProtocolError("malformed", "a COSE_Sign1 must be ES256");
  }
  if (!(kid instanceof Uint8Array) || !equal(kid, await crypto.keyId(publicKey))) {
    throw new ProtocolError("bad_signature", "signed by another key");
  }
  if (!(payload instanceof Uint8Array) || !(signature instanceof Uint8Array)) {
    throw new ProtocolError("malformed", "a COSE_Sign1's payload and signature are bytes");
  }
  if (!(await crypto.verify(publicKey, signature, sigStructure(protectedHeader, payload)))) {
    throw new ProtocolError("bad_signature", "the signature does not verify");
  }
  const claims = decode(payload, { useMaps: true });
  if (!(claims instanceof Map)) throw new ProtocolError("malformed", "claims are a map");
  // Text-keyed claims (§14's objects) as a plain object; a grant's integer keys stay a Map.
  const textual = [...claims.keys()].every((k) => typeof k === "string");
  return /** @type {Record<string, unknown>} */ (textual ? Object.fromEntries(claims) : { map: claims });
}

/** The unverified parts of a COSE_Sign1: who says they signed it, and the claims as a Map. @param {Uint8Array} data */
export function peek1(data) {
  /** @type {unknown[]} */
  const tags = [];
  tags[18] = (/** @type {() => unknown} */ inner) => ({ sign1: inner() });
  try {
    const parts = /** @type {{ sign1: unknown[] }} */ (decode(data, { tags: /** @type {any} */ (tags), useMaps: true })).sign1;
    const unprotected = /** @type {Map<number, unknown>} */ (parts[1]);
    const claims = /** @type {Map<number | string, unknown>} */ (decode(/** @type {Uint8Array} */ (parts[2]), { useMaps: true }));
    return { kid: /** @type {Uint8Array} */ (unprotected.get(4)), claims };
  } catch {
    throw new ProtocolError("grant_malformed", "not a grant");
  }
}
