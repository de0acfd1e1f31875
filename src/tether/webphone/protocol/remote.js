// Remote commands through the server (docs/protocol.md §14): the phone signs an envelope for one
// car, the server relays it, and only an answer signed by that car and naming the envelope counts.
// Requests to the server are signed per RFC 9421 with the same endpoint key (docs/cloud.md).

import { b64, b64url, equal, toHex, unb64url } from "./bytes.js";
import * as crypto from "./crypto.js";
import { sign1, verify1 } from "./cose.js";
import { ProtocolError } from "./codec.js";

/**
 * @param {{ privateKey: CryptoKey, publicKey: Uint8Array }} endpoint
 * @param {Uint8Array} vehicleId @param {string} cmd @param {number} counter @param {number} now seconds
 */
export async function envelope(endpoint, vehicleId, cmd, counter, now) {
  // Every signed object names its car as a grant does (docs/protocol.md §9.1, §14): hex text.
  const claims = { aud: toHex(vehicleId), cmd, ctr: counter, iat: now, exp: now + 60 };
  return sign1(endpoint.privateKey, await crypto.keyId(endpoint.publicKey), claims);
}

/**
 * The car's signed answer to ``sent``: it must name this car and the envelope's hash.
 * @param {Uint8Array} result @param {Uint8Array} vehicleKey @param {Uint8Array} sent
 */
export async function verifyResult(result, vehicleKey, sent) {
  const claims = await verify1(result, vehicleKey);
  const aud = claims["aud"];
  const req = claims["req"];
  if (aud !== toHex(await crypto.keyId(vehicleKey))) {
    throw new ProtocolError("result_mismatch", "an answer for another car");
  }
  if (!(req instanceof Uint8Array) || !equal(req, await crypto.sha256(sent))) {
    throw new ProtocolError("result_mismatch", "an answer to another command");
  }
  return { ok: claims["ok"] === true, reason: String(claims["reason"] ?? ""), message: String(claims["msg"] ?? "") };
}

/**
 * An RFC 9421 signed request to the server (same origin), as docs/cloud.md specifies it.
 * @param {{ privateKey: CryptoKey, publicKey: Uint8Array }} endpoint
 * @param {string} method @param {string} path @param {string} query @param {unknown} body
 */
export async function signedFetch(endpoint, method, path, query, body) {
  const bytes = new TextEncoder().encode(body === undefined ? "" : JSON.stringify(body));
  const digest = `sha-256=:${b64(await crypto.sha256(bytes))}:`;
  const nonce = toHex(crypto.randomBytes(16));
  const created = Math.floor(Date.now() / 1000);
  const keyid = toHex(await crypto.keyId(endpoint.publicKey));
  const params =
    `("@method" "@path" "@query" "content-digest");created=${created};keyid="${keyid}"` +
    `;alg="ecdsa-p256-sha256";nonce="${nonce}";tag="tether"`;
  const base = [
    `"@method": ${method.toUpperCase()}`,
    `"@path": ${path}`,
    `"@query": ?${query}`,
    `"content-digest": ${digest}`,
    `"@signature-params": ${params}`,
  ].join("\n");
  const signature = await crypto.sign(endpoint.privateKey, new TextEncoder().encode(base));
  const headers = {
    "Content-Type": "application/json",
    "Content-Digest": digest,
    "Signature-Input": `sig1=${params}`,
    Signature: `sig1=:${b64(signature)}:`,
  };
  const init = /** @type {RequestInit} */ ({ method, headers });
  if (bytes.length) init.body = bytes;
  return fetch(`${path}${query ? `?${query}` : ""}`, init);
}

/**
 * A signed call to the server's JSON API; its answer, or a ProtocolError with the server's code.
 * @param {{ privateKey: CryptoKey, publicKey: Uint8Array }} endpoint
 * @param {string} method @param {string} path @param {unknown} [body]
 * @returns {Promise<any>}
 */
export async function call(endpoint, method, path, body) {
  const response = await signedFetch(endpoint, method, path, "", body);
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new ProtocolError(String(answer.code ?? `http_${response.status}`), String(answer.detail ?? response.statusText));
  }
  return answer;
}

/**
 * Send one command to the car through the server and wait for its signed answer.
 * @param {{ endpoint: { privateKey: CryptoKey, publicKey: Uint8Array }, vehicleKey: Uint8Array }} car
 * @param {string} cmd @param {number} counter
 */
export async function command(car, cmd, counter) {
  const vehicleId = await crypto.keyId(car.vehicleKey);
  const sent = await envelope(car.endpoint, vehicleId, cmd, counter, Math.floor(Date.now() / 1000));
  const path = `/v1/vehicles/${toHex(vehicleId)}/commands`;
  const response = await signedFetch(car.endpoint, "POST", path, "wait=15", { envelope: b64url(sent) });
  const answer = await response.json();
  if (!response.ok && response.status !== 202) {
    throw new ProtocolError(String(answer.code ?? "remote_refused"), String(answer.detail ?? response.statusText));
  }
  if (answer.status !== "done" || !answer.result) {
    throw new ProtocolError("car_offline", "the car did not answer in time (the command expires by itself)");
  }
  return verifyResult(unb64url(String(answer.result)), car.vehicleKey, sent);
}

/**
 * The car's signed receipt for a revocation: it must name this car and the revocation's hash.
 * @param {Uint8Array} receipt @param {Uint8Array} vehicleKey @param {Uint8Array} revocation
 */
export async function verifyReceipt(receipt, vehicleKey, revocation) {
  const claims = await verify1(receipt, vehicleKey);
  const aud = claims["aud"];
  const rev = claims["rev"];
  if (aud !== toHex(await crypto.keyId(vehicleKey))) {
    throw new ProtocolError("result_mismatch", "a receipt from another car");
  }
  if (!(rev instanceof Uint8Array) || !equal(rev, await crypto.sha256(revocation))) {
    throw new ProtocolError("result_mismatch", "a receipt for another revocation");
  }
  return { ok: claims["ok"] === true, reason: String(claims["reason"] ?? "") };
}

/**
 * (Owner) Queue a signed revocation on the server, for the car to apply when it is online.
 * @param {{ endpoint: { privateKey: CryptoKey, publicKey: Uint8Array }, vehicleKey: Uint8Array }} car
 * @param {Uint8Array} revocation
 */
export async function queueRevocation(car, revocation) {
  const vid = toHex(await crypto.keyId(car.vehicleKey));
  await call(car.endpoint, "POST", `/v1/vehicles/${vid}/revocations`, { revocation: b64url(revocation) });
}

/**
 * The car's verified receipt for a revocation queued on the server, or null while it is pending.
 * @param {{ endpoint: { privateKey: CryptoKey, publicKey: Uint8Array }, vehicleKey: Uint8Array }} car
 * @param {Uint8Array} revocation
 */
export async function revocationReceipt(car, revocation) {
  const vid = toHex(await crypto.keyId(car.vehicleKey));
  const id = toHex(await crypto.sha256(revocation));
  const { revocations } = await call(car.endpoint, "GET", `/v1/vehicles/${vid}/revocations`);
  const entry = /** @type {any[]} */ (revocations ?? []).find((r) => r.id === id);
  if (!entry || !entry.receipt) return null; // the server's word alone ("applied") is not enough
  return verifyReceipt(unb64url(String(entry.receipt)), car.vehicleKey, revocation);
}
