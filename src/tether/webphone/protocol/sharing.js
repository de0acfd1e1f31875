// Sharing a key between phones (docs/protocol.md §9), as links: the friend's key request
// (tether://key-request/...), and the owner's grant bundle (tether://grant/...), the same as the
// tether CLI writes and reads. A grant is a COSE_Sign1 over CWT claims, made in WebCrypto.

import { decode, encode, rfc8949EncodeOptions } from "cborg";

import { b64url, toHex, unb64url } from "./bytes.js";
import { ProtocolError } from "./codec.js";
import { peek1, sign1, verify1 } from "./cose.js";
import * as crypto from "./crypto.js";

export const REQUEST_LINK = "tether://key-request/";
export const INVITE_LINK = "tether://invite/";
export const GRANT_LINK = "tether://grant/";
export const RIGHTS = ["climate", "drive", "locate", "lock", "share", "trunk", "unlock"];

/** @param {string} text @param {string} what */
function unlink(text, what) {
  try {
    return unb64url(text);
  } catch {
    throw new ProtocolError("usage_error", `the ${what} link is damaged`);
  }
}

/** @param {string} link @param {string} prefix @param {string} kind @param {string} what */
function load(link, prefix, kind, what) {
  if (!link.startsWith(prefix)) throw new ProtocolError("usage_error", `a ${what} link starts with ${prefix}`);
  /** @type {any} */
  let obj;
  try {
    obj = decode(unlink(link.slice(prefix.length).trim(), what), { useMaps: false });
  } catch (error) {
    if (error instanceof ProtocolError) throw error;
    throw new ProtocolError("usage_error", `this is not a tether ${what}`);
  }
  if (!obj || obj.kind !== kind || obj.v !== 1) throw new ProtocolError("usage_error", `this is not a tether ${what}`);
  return obj;
}

/** The friend's request: its new public key, and what to call it. @param {Uint8Array} key @param {string} label */
export function requestLink(key, label) {
  return REQUEST_LINK + b64url(encode({ kind: "tether/key-request", v: 1, key, label: label.slice(0, 64) }, rfc8949EncodeOptions));
}

/** @param {string} link @returns {{ key: Uint8Array, label: string }} */
export function readRequest(link) {
  const obj = load(link, REQUEST_LINK, "tether/key-request", "key request");
  if (!(obj.key instanceof Uint8Array) || obj.key.length !== 65 || obj.key[0] !== 4) {
    throw new ProtocolError("usage_error", "the key request holds no valid public key");
  }
  return { key: obj.key, label: typeof obj.label === "string" ? obj.label.slice(0, 64) : "" };
}

/** A COSE_Key for a P-256 public key. @param {Uint8Array} key */
function coseKey(key) {
  return new Map(/** @type {Array<[number, unknown]>} */ ([[1, 2], [-1, 1], [-2, key.slice(1, 33)], [-3, key.slice(33, 65)]]));
}

/**
 * The claims of the last grant in a credential (the holder's own). @param {Uint8Array} credential
 * @returns {Map<number | string, unknown>}
 */
function leafOf(credential) {
  const grants = /** @type {Uint8Array[]} */ (decode(credential));
  return peek1(/** @type {Uint8Array} */ (grants[grants.length - 1])).claims;
}

/**
 * A grant for the friend's requested key (§9.1), as a bundle link: the owner's root grant, or a
 * sub-grant from a shared key holding ``share`` (§9.2), which only narrows what that key holds.
 * @param {{ endpoint: { privateKey: CryptoKey, publicKey: Uint8Array }, vehicleKey: Uint8Array,
 *   name: string, address: string, role?: "owner" | "friend", credential?: Uint8Array,
 *   ownerKey?: Uint8Array }} car the issuer's key for the car
 * @param {{ key: Uint8Array, label: string }} request
 * @param {{ rights: string[], notBefore: number, expires: number, now: number }} terms seconds
 */
export async function share(car, request, terms) {
  let rights = [...new Set(terms.rights)].filter((r) => RIGHTS.includes(r)).sort();
  let { notBefore, expires } = terms;
  /** @type {Uint8Array[]} */
  let chain = [];
  /** @type {Map<number | string, unknown> | null} */
  let parent = null;
  if (car.role === "friend") {
    if (!car.credential || !car.ownerKey) throw new ProtocolError("usage_error", "this key has no grant to share from");
    chain = /** @type {Uint8Array[]} */ (decode(car.credential));
    parent = leafOf(car.credential);
    const held = /** @type {string[]} */ (parent.get("rights") ?? []);
    if (!held.includes("share")) throw new ProtocolError("grant_no_share_right", "your key does not carry the right to share");
    const extra = rights.filter((r) => !held.includes(r));
    if (extra.length) throw new ProtocolError("grant_widens_rights", `you can only pass on rights you hold: ${held.join(", ")}`);
    notBefore = Math.max(notBefore, Number(parent.get(5)));
    expires = Math.min(expires, Number(parent.get(4)));
  }
  if (!rights.length) throw new ProtocolError("grant_bad_rights", "a grant needs at least one right");
  if (expires <= notBefore) throw new ProtocolError("grant_bad_window", "a grant must end after it starts");
  const issuerId = await crypto.keyId(car.endpoint.publicKey);
  /** @type {Map<number | string, unknown>} */
  const claims = new Map(/** @type {Array<[number | string, unknown]>} */ ([
    [1, toHex(issuerId)],
    [2, toHex(await crypto.keyId(request.key))],
    [3, toHex(await crypto.keyId(car.vehicleKey))],
    [4, Math.floor(expires)],
    [5, Math.floor(notBefore)],
    [6, Math.floor(terms.now)],
    [7, crypto.randomBytes(16)],
    [8, new Map([[1, coseKey(request.key)]])],
    ["rights", rights],
  ]));
  if (parent) {
    claims.set("parent", parent.get(7));
    if (parent.has("limits")) claims.set("limits", parent.get("limits")); // never looser
  }
  if (request.label) claims.set("label", request.label);
  const serial = /** @type {Uint8Array} */ (claims.get(7));
  const grant = await sign1(car.endpoint.privateKey, issuerId, claims);
  const bundle = {
    kind: "tether/grant",
    v: 1,
    chain: encode([...chain, grant], rfc8949EncodeOptions),
    vehicle_key: car.vehicleKey,
    vehicle_name: car.name,
    address: car.address,
    owner_key: car.role === "friend" ? /** @type {Uint8Array} */ (car.ownerKey) : car.endpoint.publicKey,
  };
  const bytes = encode(bundle, rfc8949EncodeOptions);
  rights = /** @type {string[]} */ (claims.get("rights"));
  return { link: GRANT_LINK + b64url(bytes), bundle: bytes, serial, rights, expires: Math.floor(expires) };
}

/**
 * The owner's revocation of grants it issued (§9.3); ``seq`` must grow: max(last + 1, now ms).
 * @param {{ endpoint: { privateKey: CryptoKey, publicKey: Uint8Array }, vehicleKey: Uint8Array }} car
 * @param {Uint8Array[]} serials @param {number} seq @param {number} now seconds
 */
export async function revocation(car, serials, seq, now) {
  const claims = {
    aud: toHex(await crypto.keyId(car.vehicleKey)),
    seq,
    keys: [],
    grants: [...serials].sort((a, b) => toHex(a).localeCompare(toHex(b))),
    iat: Math.floor(now),
  };
  return sign1(car.endpoint.privateKey, await crypto.keyId(car.endpoint.publicKey), claims);
}

/**
 * Everything a phone checks before it keeps a shared key: the whole chain's signatures, that it
 * names this car and exactly the key this phone asked with, and its window.
 * @param {string} link @param {Uint8Array} requested the public key this phone asked with
 * @param {number} now seconds
 */
export async function accept(link, requested, now) {
  const obj = load(link, GRANT_LINK, "tether/grant", "grant");
  const { chain, vehicle_key: vehicleKey, vehicle_name: name, address, owner_key: ownerKey } = obj;
  if (!(chain instanceof Uint8Array) || !(vehicleKey instanceof Uint8Array) || !(ownerKey instanceof Uint8Array)) {
    throw new ProtocolError("grant_malformed", "the grant is damaged");
  }
  const grants = decode(chain);
  if (!Array.isArray(grants) || grants.length < 1 || !grants.every((g) => g instanceof Uint8Array)) {
    throw new ProtocolError("grant_malformed", "the grant is damaged");
  }
  const vehicleId = toHex(await crypto.keyId(vehicleKey));
  let signer = ownerKey;
  /** @type {Map<number | string, unknown> | null} */
  let above = null;
  /** @type {Map<number | string, unknown>} */
  let leaf = new Map();
  for (const grant of /** @type {Uint8Array[]} */ (grants)) {
    await verify1(grant, signer); // every signature, root first, each by the key above it
    leaf = peek1(grant).claims;
    if (leaf.get(3) !== vehicleId) throw new ProtocolError("grant_wrong_vehicle", "the grant names another car");
    if (above) narrows(above, leaf);
    else if (leaf.has("parent")) throw new ProtocolError("grant_broken_chain", "the first grant is not the owner's");
    const cnf = /** @type {Map<number, Map<number, Uint8Array>>} */ (leaf.get(8)).get(1);
    signer = new Uint8Array([4, ...(cnf?.get(-2) ?? []), ...(cnf?.get(-3) ?? [])]);
    above = leaf;
  }
  if (leaf.get(2) !== toHex(await crypto.keyId(requested))) {
    throw new ProtocolError("grant_key_mismatch", "this grant is for a key this phone did not ask with");
  }
  if (Number(leaf.get(4)) <= now) throw new ProtocolError("grant_expired", "the grant has expired");
  return {
    name: String(name),
    address: String(address),
    vehicleKey,
    credential: chain,
    rights: /** @type {string[]} */ (leaf.get("rights") ?? []),
    notAfter: Number(leaf.get(4)),
    ownerKey,
  };
}

/**
 * The car's rules between a grant and the sub-grant below it (§9.2, rules 3 and 4).
 * @param {Map<number | string, unknown>} above @param {Map<number | string, unknown>} below
 */
function narrows(above, below) {
  const serial = /** @type {Uint8Array | undefined} */ (above.get(7));
  const parent = below.get("parent");
  if (!(parent instanceof Uint8Array) || !serial || toHex(parent) !== toHex(serial)) {
    throw new ProtocolError("grant_broken_chain", "a sub-grant does not name the grant above it");
  }
  const held = /** @type {string[]} */ (above.get("rights") ?? []);
  if (!held.includes("share")) throw new ProtocolError("grant_no_share_right", "the issuer of a sub-grant may not share");
  const wanted = /** @type {string[]} */ (below.get("rights") ?? []);
  if (!wanted.every((r) => held.includes(r))) throw new ProtocolError("grant_widens_rights", "a sub-grant may not add rights");
  if (Number(below.get(5)) < Number(above.get(5)) || Number(below.get(4)) > Number(above.get(4))) {
    throw new ProtocolError("grant_widens_window", "a sub-grant may not widen the time window");
  }
  // Limits the issuer lives under must be passed on; how much stricter they are is the car's check.
  if (above.has("limits") && !below.has("limits")) {
    throw new ProtocolError("grant_widens_limits", "a sub-grant may not loosen its limits");
  }
}

/** A bundle's bytes (from the server's mailbox) as the link :func:`accept` reads. @param {Uint8Array} bytes */
export function bundleLink(bytes) {
  return GRANT_LINK + b64url(bytes);
}

/** (server URL, token) from tether://invite/<base64url server>#<token>. @param {string} link */
export function readInvite(link) {
  if (!link.startsWith(INVITE_LINK) || !link.includes("#")) {
    throw new ProtocolError("usage_error", "an invitation link starts with tether://invite/");
  }
  const [encoded = "", token = ""] = link.slice(INVITE_LINK.length).split("#", 2);
  const server = new TextDecoder().decode(unlink(encoded, "invitation"));
  if (!/^https?:\/\//.test(server) || !token) throw new ProtocolError("usage_error", "the invitation link is damaged");
  return { server, token };
}

/** @param {string} server @param {string} token */
export function inviteLink(server, token) {
  return `${INVITE_LINK}${b64url(new TextEncoder().encode(server))}#${token}`;
}
