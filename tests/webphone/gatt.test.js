// The GATT framing every BLE pipe shares (§2.1): the same rules the car's bumble transport keeps.

import assert from "node:assert/strict";
import { test } from "node:test";

import { Reassembler, fragment } from "../../src/tether/webphone/protocol/gatt.js";

test("fragments carry one header byte, 0x01 only on the last", () => {
  const message = Uint8Array.from({ length: 600 }, (_, i) => i % 251);
  const pieces = fragment(message, 244);
  assert.deepEqual(pieces.map((p) => p.length), [244, 244, 115]);
  assert.deepEqual(pieces.map((p) => p[0]), [0, 0, 1]);
  const back = new Reassembler();
  assert.equal(back.push(/** @type {Uint8Array} */ (pieces[0])), null);
  assert.equal(back.push(/** @type {Uint8Array} */ (pieces[1])), null);
  assert.deepEqual(back.push(/** @type {Uint8Array} */ (pieces[2])), message);
  assert.deepEqual(fragment(Uint8Array.of(7), 20), [Uint8Array.of(1, 7)]);
});

test("the largest message passes and a larger one is refused on both ends", () => {
  const big = new Uint8Array(65536).fill(0xaa);
  const back = new Reassembler();
  let whole = null;
  for (const piece of fragment(big, 244)) whole = back.push(piece);
  assert.equal(whole?.length, 65536);
  assert.throws(() => fragment(new Uint8Array(65537), 244), RangeError);
  assert.throws(() => fragment(new Uint8Array(0), 244), RangeError);
  const flood = new Reassembler();
  assert.throws(() => {
    for (let i = 0; i < 300; i += 1) flood.push(new Uint8Array(244)); // never a last fragment
  }, RangeError);
});
