// The web phone's modules against every stored vector (tests/vectors/*.json): its codec
// re-encodes every message byte for byte, and it derives what a phone derives in each flow.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { ascii, concat, fromHex, toBigInt, toHex } from "../../src/tether/webphone/protocol/bytes.js";
import { decodeMessage, encodeMessage, field } from "../../src/tether/webphone/protocol/codec.js";
import * as crypto from "../../src/tether/webphone/protocol/crypto.js";
import { Prover, passwordInput, publicOf, splitW } from "../../src/tether/webphone/protocol/spake2plus.js";

/** @param {string} name @returns {any} */
function vector(name) {
  return JSON.parse(readFileSync(new URL(`../vectors/${name}`, import.meta.url), "utf8"));
}

/** @param {any} entry */
const msg = (entry) => decodeMessage(fromHex(entry.hex));

test("every logged message decodes and re-encodes to the same bytes", () => {
  let count = 0;
  /** @param {any} node */
  const walk = (node) => {
    if (Array.isArray(node)) node.forEach(walk);
    else if (node && typeof node === "object") {
      if (typeof node.hex === "string" && typeof node.type === "string") {
        const decoded = msg(node);
        assert.equal(decoded.name, node.type);
        assert.equal(toHex(encodeMessage(decoded.type, decoded.fields)), node.hex);
        count += 1;
      }
      Object.values(node).forEach(walk);
    }
  };
  ["pairing.json", "transactions.json"].forEach((name) => walk(vector(name)));
  assert.ok(count > 40, `only ${count} messages`);
});

test("a version-1 message and a non-deterministic encoding are refused", () => {
  assert.throws(() => decodeMessage(fromHex("8301183ca2016178026179")), { code: "unsupported_version" });
  assert.throws(() => decodeMessage(fromHex("8302183ca2026179016178")), { code: "malformed" }); // keys unsorted
  assert.throws(() => decodeMessage(fromHex("8302183ca201617802617900")), { code: "malformed" }); // trailing
  assert.throws(() => decodeMessage(fromHex("8302183ca1016178")), { code: "malformed" }); // no field 2
});

test("the phone's side of owner pairing reproduces the vector", async () => {
  const v = vector("pairing.json");
  const { inputs, derived, messages } = v;
  const ids = { context: ascii(inputs.context), prover: ascii(inputs.id_prover), verifier: ascii(inputs.id_verifier) };
  const p = inputs.pbkdf2_hmac_sha256;
  const material = await crypto.pbkdf2(passwordInput(ascii(inputs.code), ids), ascii(p.salt), p.iterations, p.length);
  const { w0, w1 } = splitW(material);
  assert.equal(w0.toString(16).padStart(64, "0"), derived.w0);
  const x = toBigInt(fromHex(inputs.phone_draws[0].value));
  const prover = new Prover(w0, w1, ids, x);
  assert.equal(toHex(prover.share), toHex(field(msg(messages[1]), 1)));
  const greeting = /** @type {Uint8Array} */ (field(msg(messages[0]), 1));
  const shareV = /** @type {Uint8Array} */ (field(msg(messages[2]), 1));
  const outcome = await prover.finish(shareV);
  assert.equal(toHex(outcome.confirmP), toHex(field(msg(messages[3]), 1)));
  assert.equal(toHex(outcome.confirmV), toHex(field(msg(messages[4]), 1)));
  const th = await crypto.sha256(concat(ascii("tether/2 pairing transcript"), greeting, prover.share, shareV));
  assert.equal(toHex(th), derived.transcript_hash);
  const seal = await crypto.hkdf(outcome.sharedKey, th, ascii("tether/2 pairing keys"), 64);
  const identity = await crypto.open(seal.slice(32), new Uint8Array(12), field(msg(messages[4]), 2), th);
  const car = decodeMessage(identity);
  assert.equal(car.name, "VehicleIdentity");
  assert.equal(field(car, 2), inputs.vehicle_name);
  const phonePublic = publicOf(toBigInt(fromHex(inputs.phone_private_scalar)));
  const signed = concat(ascii("tether/2 pairing vehicle"), th, phonePublic);
  assert.ok(await crypto.verify(field(car, 1), field(car, 3), signed));
  const mine = await crypto.open(seal.slice(0, 32), new Uint8Array(12), field(msg(messages[3]), 2), th);
  assert.equal(toHex(mine), derived.phone_enrollment);
  await assert.rejects(crypto.open(seal.slice(0, 32), new Uint8Array(12), field(msg(messages[4]), 2), th), {
    code: "bad_tag",
  });
});

/** @param {Uint8Array} okm @param {number} at */
const keysAt = (okm, at) => ({
  p2v: okm.slice(at, at + 32),
  v2p: okm.slice(at + 32, at + 64),
  ivP2v: okm.slice(at + 64, at + 76),
  ivV2p: okm.slice(at + 76, at + 88),
  persistent: okm.slice(at + 88, at + 120),
  finished: okm.slice(at + 120, at + 152),
});

test("the phone's side of a standard transaction reproduces the vector", async () => {
  const t = vector("transactions.json");
  const v = t.standard;
  const log = v.messages;
  const vehicleId = fromHex(t.vehicle_id);
  const greeting = /** @type {Uint8Array} */ (field(msg(log[0]), 1));
  const hello = msg(log[1]);
  const vauth = msg(log[2]);
  const ephScalar = fromHex(v.phone_draws[0].value);
  const eph = await crypto.importPrivate(ephScalar, publicOf(toBigInt(ephScalar)), "ECDH");
  const th1 = await crypto.sha256(
    concat(ascii("tether/2 standard"), greeting, field(hello, 1), field(hello, 2), field(vauth, 1), field(vauth, 2), vehicleId),
  );
  assert.equal(toHex(th1), v.th1);
  const shared = await crypto.ecdh(eph, field(vauth, 1));
  const okm = await crypto.hkdf(shared, th1, ascii("tether/2 standard keys"), 216);
  assert.equal(toHex(okm), v.okm);
  const sigV = await crypto.open(okm.slice(0, 32), new Uint8Array(12), field(vauth, 3), th1);
  const vehiclePublic = publicOf(toBigInt(fromHex(t.vehicle_private_scalar)));
  assert.ok(await crypto.verify(vehiclePublic, sigV, concat(ascii("tether/2 vehicle-auth"), th1)));
  const pauth = msg(log[3]);
  const th2 = await crypto.sha256(concat(th1, field(vauth, 3), field(pauth, 1)));
  const keys = keysAt(okm, 64);
  assert.equal(toHex(/** @type {Uint8Array} */ (field(msg(log[4]), 1))), toHex(await crypto.hmac(keys.finished, th2)));
});

test("a fast unlock in one round trip, and its records, reproduce the vector", async () => {
  const t = vector("transactions.json");
  const v = t.fast_with_early_record;
  const log = v.messages;
  const persistent = fromHex(v.persistent_key);
  const greeting = /** @type {Uint8Array} */ (field(msg(log[0]), 1));
  const proof = msg(log[1]);
  const th = await crypto.sha256(concat(ascii("tether/2 fast"), greeting, field(proof, 1), fromHex(t.vehicle_id)));
  const cryptogram = await crypto.hmac(persistent, concat(ascii("tether/2 fast-phone"), th));
  assert.equal(toHex(cryptogram), toHex(field(proof, 2)));
  const keys = keysAt(await crypto.hkdf(persistent, th, ascii("tether/2 fast session"), 152), 0);
  const finished = log.find((/** @type {any} */ e) => e.type === "Finished");
  assert.equal(toHex(field(msg(finished), 1)), toHex(await crypto.hmac(keys.finished, concat(th, cryptogram))));
  /** @param {Uint8Array} iv @param {number} counter */
  const nonce = (iv, counter) => {
    const out = iv.slice();
    new DataView(out.buffer).setUint32(8, new DataView(iv.buffer, iv.byteOffset).getUint32(8) ^ counter);
    return out;
  };
  const records = log.filter((/** @type {any} */ e) => e.type === "Record");
  const request = await crypto.open(keys.p2v, nonce(keys.ivP2v, 0), field(msg(records[0]), 1), ascii("tether/2 record"));
  const result = await crypto.open(keys.v2p, nonce(keys.ivV2p, 0), field(msg(records[1]), 1), ascii("tether/2 record"));
  assert.equal(decodeMessage(request).name, "CommandRequest");
  assert.equal(field(decodeMessage(request), 2), "unlock");
  const answer = decodeMessage(result);
  assert.equal(answer.name, "CommandResult");
  assert.equal(field(answer, 2), true);
});
