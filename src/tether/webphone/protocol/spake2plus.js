// SPAKE2+ (RFC 9383), P256-SHA256-HKDF-SHA256-HMAC-SHA256: the PAKE of owner pairing (§5).
// The phone is the Prover. Point arithmetic comes from @noble/curves (WebCrypto has none);
// hashing, HKDF and HMAC from crypto.js.

import { p256 } from "@noble/curves/nist.js";

import { concat, equal, fromBigInt, fromHex, len8, toBigInt } from "./bytes.js";
import { CryptoError, hkdf, hmac, sha256 } from "./crypto.js";

const Point = p256.Point;
/** The order of P-256's group. */
export const ORDER = Point.Fn.ORDER;
/** RFC 9382 §6's M and N for P-256 (compressed SEC1). */
export const M = Point.fromBytes(fromHex("02886e2f97ace46e55ba9dd7242579f2993b64e16ef3dcab95afd497333d8fa12f"));
export const N = Point.fromBytes(fromHex("03d8bbd6c639c62937b04d997f38c3770719c629d7014d49a24b4f98baa1292b49"));

/**
 * @typedef {{ context: Uint8Array, prover: Uint8Array, verifier: Uint8Array }} Ids
 * @typedef {{ shareP: Uint8Array, shareV: Uint8Array, confirmP: Uint8Array,
 *   confirmV: Uint8Array, sharedKey: Uint8Array, kMain: Uint8Array }} Outcome
 */

/** @param {InstanceType<typeof Point>} point @returns {Uint8Array} */
export function encode(point) {
  return point.toBytes(false);
}

/** A share from the peer: a point of P-256, never the identity. @param {Uint8Array} bytes */
export function decodeShare(bytes) {
  try {
    const point = Point.fromBytes(bytes);
    point.assertValidity();
    if (point.is0()) {
      throw new Error("identity");
    }
    return point;
  } catch {
    throw new CryptoError("bad_pake_message", "a pairing share is not a P-256 point");
  }
}

/** The PBKDF's input. @param {Uint8Array} password @param {Ids} ids @returns {Uint8Array} */
export function passwordInput(password, ids) {
  return concat(len8(password), len8(ids.prover), len8(ids.verifier));
}

/** ``w0``, ``w1`` from 80 bytes of PBKDF output. @param {Uint8Array} material */
export function splitW(material) {
  if (material.length !== 80) {
    throw new TypeError("SPAKE2+ needs 80 bytes of password-derived material for P-256");
  }
  return { w0: toBigInt(material.slice(0, 40)) % ORDER, w1: toBigInt(material.slice(40)) % ORDER };
}

/** The verifier's record: ``L = w1·G``. @param {bigint} w1 @returns {Uint8Array} */
export function verifierL(w1) {
  return encode(Point.BASE.multiply(w1));
}

/**
 * The end of either side: both confirmations and the shared key (RFC 9383 §3.4).
 * @param {Ids} ids @param {bigint} w0 @param {Uint8Array} shareP @param {Uint8Array} shareV
 * @param {Uint8Array} z @param {Uint8Array} v @returns {Promise<Outcome>}
 */
async function finish(ids, w0, shareP, shareV, z, v) {
  const tt = concat(
    ...[ids.context, ids.prover, ids.verifier, encode(M), encode(N), shareP, shareV, z, v, fromBigInt(w0, 32)].map(
      len8,
    ),
  );
  const kMain = await sha256(tt);
  const keys = await hkdf(kMain, new Uint8Array(), new TextEncoder().encode("ConfirmationKeys"), 64);
  return {
    shareP,
    shareV,
    confirmP: await hmac(keys.slice(0, 32), shareV),
    confirmV: await hmac(keys.slice(32), shareP),
    sharedKey: await hkdf(kMain, new Uint8Array(), new TextEncoder().encode("SharedKey"), 32),
    kMain,
  };
}

/** The phone's side: its share now, then :func:`proverFinish` with the car's. */
export class Prover {
  /** @param {bigint} w0 @param {bigint} w1 @param {Ids} ids @param {bigint} x in [1, order) */
  constructor(w0, w1, ids, x) {
    if (x <= 0n || x >= ORDER) {
      throw new RangeError("the prover's scalar must be in [1, order)");
    }
    this.w0 = w0;
    this.w1 = w1;
    this.ids = ids;
    this.x = x;
    this.share = encode(Point.BASE.multiply(x).add(M.multiply(w0)));
  }

  /** @param {Uint8Array} shareV @returns {Promise<Outcome>} */
  async finish(shareV) {
    if (equal(shareV, this.share)) {
      throw new CryptoError("bad_pake_message", "the peer sent back our own share");
    }
    const base = decodeShare(shareV).subtract(N.multiply(this.w0));
    return finish(this.ids, this.w0, this.share, shareV, encode(base.multiply(this.x)), encode(base.multiply(this.w1)));
  }
}

/** The car's side (the phone never plays it; here for RFC 9383's vectors and tests). */
export class Verifier {
  /** @param {bigint} w0 @param {Uint8Array} L @param {Ids} ids @param {bigint} y in [1, order) */
  constructor(w0, L, ids, y) {
    this.w0 = w0;
    this.L = decodeShare(L);
    this.ids = ids;
    this.y = y;
    this.share = encode(Point.BASE.multiply(y).add(N.multiply(w0)));
  }

  /** @param {Uint8Array} shareP @returns {Promise<Outcome>} */
  async finish(shareP) {
    if (equal(shareP, this.share)) {
      throw new CryptoError("bad_pake_message", "the peer sent back our own share");
    }
    const base = decodeShare(shareP).subtract(M.multiply(this.w0));
    return finish(this.ids, this.w0, shareP, this.share, encode(base.multiply(this.y)), encode(this.L.multiply(this.y)));
  }
}

/** The public point of a private scalar (test vectors only). @param {bigint} scalar */
export function publicOf(scalar) {
  return encode(Point.BASE.multiply(scalar));
}
