// Sharing in the browser's code: a friend holding share hands on a narrower key (a sub-grant), and
// a phone accepting a bundle applies the car's chain rules (§9.2) before it keeps anything.

import assert from "node:assert/strict";
import { test } from "node:test";

import { decode, encode, rfc8949EncodeOptions } from "cborg";

import { unb64url } from "../../src/tether/webphone/protocol/bytes.js";
import * as crypto from "../../src/tether/webphone/protocol/crypto.js";
import * as sharing from "../../src/tether/webphone/protocol/sharing.js";

const NOW = 1_800_000_000;

async function setUp() {
  const vehicle = await crypto.generateKey("ECDSA");
  const owner = { endpoint: await crypto.generateKey("ECDSA"), vehicleKey: vehicle.publicKey, name: "Car", address: "ws://127.0.0.1:1", role: /** @type {const} */ ("owner") };
  const bea = await crypto.generateKey("ECDSA");
  const cy = await crypto.generateKey("ECDSA");
  const terms = { notBefore: NOW - 60, expires: NOW + 3600, now: NOW };
  const root = await sharing.share(owner, { key: bea.publicKey, label: "Bea" }, { ...terms, rights: ["unlock", "lock", "share"] });
  const got = await sharing.accept(root.link, bea.publicKey, NOW);
  const friend = { endpoint: bea, vehicleKey: got.vehicleKey, name: "Car", address: got.address, role: /** @type {const} */ ("friend"), credential: got.credential, ownerKey: got.ownerKey };
  return { owner, bea, cy, terms, root, friend };
}

/** @param {string} link @returns {any} */
function bundleOf(link) {
  return decode(unb64url(link.slice(sharing.GRANT_LINK.length)), { useMaps: false });
}

test("a friend holding share hands on a narrower key, and the receiver checks the whole chain", async () => {
  const { cy, terms, friend } = await setUp();
  const sub = await sharing.share(friend, { key: cy.publicKey, label: "Cy" }, { ...terms, expires: NOW + 99_999, rights: ["unlock"] });
  assert.equal(sub.expires, NOW + 3600); // never past the grant it comes from
  const got = await sharing.accept(sub.link, cy.publicKey, NOW);
  assert.deepEqual(got.rights, ["unlock"]);
  assert.equal(decode(got.credential).length, 2);
});

test("a friend cannot pass on rights she does not hold, nor share without share", async () => {
  const { owner, bea, cy, terms, friend } = await setUp();
  await assert.rejects(sharing.share(friend, { key: cy.publicKey, label: "" }, { ...terms, rights: ["drive"] }), { code: "grant_widens_rights" });
  const plain = await sharing.share(owner, { key: bea.publicKey, label: "" }, { ...terms, rights: ["unlock"] });
  const got = await sharing.accept(plain.link, bea.publicKey, NOW);
  const holder = { ...friend, credential: got.credential };
  await assert.rejects(sharing.share(holder, { key: cy.publicKey, label: "" }, { ...terms, rights: ["unlock"] }), { code: "grant_no_share_right" });
});

test("a chain whose second grant does not come from the first is refused", async () => {
  const { owner, bea, cy, terms, root } = await setUp();
  // Bea signs a grant shaped as a root (no parent) and staples it under Ada's: not a sub-grant.
  const forged = await sharing.share({ ...owner, endpoint: bea }, { key: cy.publicKey, label: "" }, { ...terms, rights: ["unlock"] });
  const rootBundle = bundleOf(root.link);
  const chain = [...decode(rootBundle.chain), ...decode(bundleOf(forged.link).chain)];
  const bundle = { ...rootBundle, chain: encode(chain, rfc8949EncodeOptions) };
  const link = sharing.bundleLink(encode(bundle, rfc8949EncodeOptions));
  await assert.rejects(sharing.accept(link, cy.publicKey, NOW), { code: "grant_broken_chain" });
});

test("a sub-grant signed by someone other than the key above it is refused", async () => {
  const { owner, cy, terms, root } = await setUp();
  const stranger = await crypto.generateKey("ECDSA");
  const friend = { ...owner, endpoint: stranger, role: /** @type {const} */ ("friend"), credential: bundleOf(root.link).chain, ownerKey: owner.endpoint.publicKey };
  const sub = await sharing.share(friend, { key: cy.publicKey, label: "" }, { ...terms, rights: ["unlock"] });
  await assert.rejects(sharing.accept(sub.link, cy.publicKey, NOW));
});
