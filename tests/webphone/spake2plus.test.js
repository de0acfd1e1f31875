// SPAKE2+ in the browser's modules against RFC 9383 appendix C, and what a prover refuses.

import assert from "node:assert/strict";
import { test } from "node:test";

import { ascii, fromHex, toHex } from "../../src/tether/webphone/protocol/bytes.js";
import { Prover, Verifier, verifierL } from "../../src/tether/webphone/protocol/spake2plus.js";

const IDS = {
  context: ascii("SPAKE2+-P256-SHA256-HKDF-SHA256-HMAC-SHA256 Test Vectors"),
  prover: ascii("client"),
  verifier: ascii("server"),
};
const W0 = 0xbb8e1bbcf3c48f62c08db243652ae55d3e5586053fca77102994f23ad95491b3n;
const W1 = 0x7e945f34d78785b8a3ef44d0df5a1a97d6b3b460409a345ca7830387a74b1dban;
const X = 0xd1232c8e8693d02368976c174e2088851b8365d0d79a9eee709c6a05a2fad539n;
const Y = 0x717a72348a182085109c8d3917d6c43d59b224dc6a7fc4f0483232fa6516d8b3n;

test("both sides reproduce RFC 9383 appendix C", async () => {
  const L = verifierL(W1);
  assert.equal(
    toHex(L),
    "04eb7c9db3d9a9eb1f8adab81b5794c1f13ae3e225efbe91ea487425854c7fc00f00bfedcbd09b2400142d40a14f2064ef31dfaa903b91d1faea7093d835966efd",
  );
  const prover = new Prover(W0, W1, IDS, X);
  const verifier = new Verifier(W0, L, IDS, Y);
  assert.equal(
    toHex(prover.share),
    "04ef3bd051bf78a2234ec0df197f7828060fe9856503579bb1733009042c15c0c1de127727f418b5966afadfdd95a6e4591d171056b333dab97a79c7193e341727",
  );
  const mine = await prover.finish(verifier.share);
  const theirs = await verifier.finish(prover.share);
  assert.deepEqual(mine, theirs);
  assert.equal(toHex(mine.kMain), "4c59e1ccf2cfb961aa31bd9434478a1089b56cd11542f53d3576fb6c2a438a29");
  assert.equal(toHex(mine.confirmP), "926cc713504b9b4d76c9162ded04b5493e89109f6d89462cd33adc46fda27527");
  assert.equal(toHex(mine.confirmV), "9747bcc4f8fe9f63defee53ac9b07876d907d55047e6ff2def2e7529089d3e68");
  assert.equal(toHex(mine.sharedKey), "0c5f8ccd1413423a54f6c1fb26ff01534a87f893779c6e68666d772bfd91f3e7");
});

test("a reflected share or one that is no point is refused", async () => {
  const prover = new Prover(W0, W1, IDS, X);
  await assert.rejects(prover.finish(prover.share), { code: "bad_pake_message" });
  await assert.rejects(prover.finish(fromHex(`04${"ff".repeat(64)}`)), { code: "bad_pake_message" });
  await assert.rejects(prover.finish(new Uint8Array(65)), { code: "bad_pake_message" });
});
