// Every primitive the phone uses, through WebCrypto (in browsers and Node alike): SHA-256,
// HMAC-SHA256, HKDF-SHA256, PBKDF2-HMAC-SHA256, AES-256-GCM, ECDSA and ECDH on P-256.
// Only SPAKE2+'s point arithmetic, which WebCrypto lacks, lives elsewhere (spake2plus.js).

import { b64url } from "./bytes.js";

const subtle = globalThis.crypto.subtle;
const P256 = { name: "ECDSA", namedCurve: "P-256" };

/** @param {Uint8Array} data @returns {BufferSource} */
function buf(data) {
  return /** @type {BufferSource} */ (data);
}

/** @param {Uint8Array} data @returns {Promise<Uint8Array>} */
export async function sha256(data) {
  return new Uint8Array(await subtle.digest("SHA-256", buf(data)));
}

/** @param {Uint8Array} key @param {Uint8Array} data @returns {Promise<Uint8Array>} */
export async function hmac(key, data) {
  const k = await subtle.importKey("raw", buf(key), { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
  ]);
  return new Uint8Array(await subtle.sign("HMAC", k, buf(data)));
}

/**
 * RFC 5869 HKDF-SHA256; an empty salt is the RFC's default (zeros), as in the Python core.
 * @param {Uint8Array} ikm @param {Uint8Array} salt @param {Uint8Array} info @param {number} length
 * @returns {Promise<Uint8Array>}
 */
export async function hkdf(ikm, salt, info, length) {
  const k = await subtle.importKey("raw", buf(ikm), "HKDF", false, ["deriveBits"]);
  const bits = await subtle.deriveBits(
    { name: "HKDF", hash: "SHA-256", salt: buf(salt.length ? salt : new Uint8Array(32)), info: buf(info) },
    k,
    length * 8,
  );
  return new Uint8Array(bits);
}

/**
 * @param {Uint8Array} secret @param {Uint8Array} salt @param {number} iterations @param {number} length
 * @returns {Promise<Uint8Array>}
 */
export async function pbkdf2(secret, salt, iterations, length) {
  const k = await subtle.importKey("raw", buf(secret), "PBKDF2", false, ["deriveBits"]);
  const bits = await subtle.deriveBits(
    { name: "PBKDF2", hash: "SHA-256", salt: buf(salt), iterations },
    k,
    length * 8,
  );
  return new Uint8Array(bits);
}

/**
 * @param {Uint8Array} key @param {Uint8Array} nonce @param {Uint8Array} plaintext @param {Uint8Array} aad
 * @returns {Promise<Uint8Array>}
 */
export async function seal(key, nonce, plaintext, aad) {
  const k = await subtle.importKey("raw", buf(key), "AES-GCM", false, ["encrypt"]);
  const out = await subtle.encrypt({ name: "AES-GCM", iv: buf(nonce), additionalData: buf(aad) }, k, buf(plaintext));
  return new Uint8Array(out);
}

/**
 * Opens or throws ``CryptoError`` (a modified, replayed or misaddressed ciphertext).
 * @param {Uint8Array} key @param {Uint8Array} nonce @param {Uint8Array} ciphertext @param {Uint8Array} aad
 * @returns {Promise<Uint8Array>}
 */
export async function open(key, nonce, ciphertext, aad) {
  const k = await subtle.importKey("raw", buf(key), "AES-GCM", false, ["decrypt"]);
  try {
    const out = await subtle.decrypt({ name: "AES-GCM", iv: buf(nonce), additionalData: buf(aad) }, k, buf(ciphertext));
    return new Uint8Array(out);
  } catch {
    throw new CryptoError("bad_tag", "a sealed message does not authenticate");
  }
}

/**
 * ECDSA P-256 SHA-256 over ``data``; ``signature`` is 64 bytes r||s (WebCrypto's own format).
 * @param {Uint8Array} publicKey 65-byte SEC1 point @param {Uint8Array} signature @param {Uint8Array} data
 * @returns {Promise<boolean>}
 */
export async function verify(publicKey, signature, data) {
  const k = await subtle.importKey("raw", buf(publicKey), P256, false, ["verify"]);
  return subtle.verify({ name: "ECDSA", hash: "SHA-256" }, k, buf(signature), buf(data));
}

/** A typed failure of a cryptographic check, with the §10 code it maps to. */
export class CryptoError extends Error {
  /** @param {string} code @param {string} message */
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/**
 * A private P-256 key from its scalar and public point (for test vectors; a phone makes its keys
 * with ``generateKey`` as non-extractable and never sees a scalar).
 * @param {Uint8Array} scalar 32 bytes @param {Uint8Array} publicKey 65-byte SEC1 point
 * @param {"ECDSA" | "ECDH"} use @returns {Promise<CryptoKey>}
 */
export async function importPrivate(scalar, publicKey, use) {
  const jwk = {
    kty: "EC",
    crv: "P-256",
    d: b64url(scalar),
    x: b64url(publicKey.slice(1, 33)),
    y: b64url(publicKey.slice(33, 65)),
    ext: false,
  };
  const algorithm = { name: use, namedCurve: "P-256" };
  return subtle.importKey("jwk", jwk, algorithm, false, use === "ECDSA" ? ["sign"] : ["deriveBits"]);
}

/**
 * ECDH: the 32-byte X coordinate shared with ``peer`` (a 65-byte SEC1 point).
 * @param {CryptoKey} privateKey @param {Uint8Array} peer @returns {Promise<Uint8Array>}
 */
export async function ecdh(privateKey, peer) {
  const publicKey = await subtle.importKey("raw", buf(peer), { name: "ECDH", namedCurve: "P-256" }, false, []);
  return new Uint8Array(await subtle.deriveBits({ name: "ECDH", public: publicKey }, privateKey, 256));
}

/** Fresh random bytes from the platform's CSPRNG. @param {number} n @returns {Uint8Array} */
export function randomBytes(n) {
  return globalThis.crypto.getRandomValues(new Uint8Array(n));
}

/**
 * A new P-256 key pair made inside WebCrypto; the private half is never extractable.
 * @param {"ECDSA" | "ECDH"} use @returns {Promise<{ privateKey: CryptoKey, publicKey: Uint8Array }>}
 */
export async function generateKey(use) {
  const usages = /** @type {KeyUsage[]} */ (use === "ECDSA" ? ["sign", "verify"] : ["deriveBits"]);
  const pair = /** @type {CryptoKeyPair} */ (
    await subtle.generateKey({ name: use, namedCurve: "P-256" }, false, usages)
  );
  return { privateKey: pair.privateKey, publicKey: new Uint8Array(await subtle.exportKey("raw", pair.publicKey)) };
}

/** ECDSA P-256 SHA-256, as 64 bytes r||s. @param {CryptoKey} key @param {Uint8Array} data */
export async function sign(key, data) {
  return new Uint8Array(await subtle.sign({ name: "ECDSA", hash: "SHA-256" }, key, buf(data)));
}

/** A key's id: the first 16 bytes of SHA-256 over its 65-byte encoding. @param {Uint8Array} key */
export async function keyId(key) {
  return (await sha256(key)).slice(0, 16);
}
