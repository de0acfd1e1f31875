// The web phone's standard and fast transactions, in Node with the browser's own modules, against
// the crypto floor done with WebCrypto in the same run.
//
// The phone is src/tether/webphone/protocol/ (WebCrypto, cborg, @noble/curves); the car is a real
// `tether vehicle run --listen ws://127.0.0.1:0` process, so a transaction here includes the
// loopback WebSocket and the car's own work, as on a phone at the car. The floor is what a
// standard transaction cannot avoid, as bench/transaction.py defines it: two P-256 key
// generations, two ECDH, two ECDSA signatures and two verifications, here with WebCrypto.
// Samples of the floor, standard and fast are interleaved so that noise hits all three alike.
// Round trips are counted after the car's greeting until the phone holds the command's result.
// Ends with exactly one line:
//   standard_over_floor=R1 fast_over_standard=R2 fast_round_trips=N1 standard_round_trips=N2
//
//   node --experimental-websocket bench/webphone.mjs [--rounds N]

import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

import * as crypto from "../src/tether/webphone/protocol/crypto.js";
import { PhonePairing, PhoneTransaction, codeSecret } from "../src/tether/webphone/protocol/phone.js";
import { WsTransport } from "../src/tether/webphone/protocol/transport.js";

const TETHER = new URL("../.venv/bin/tether", import.meta.url).pathname;
const at = process.argv.indexOf("--rounds");
const ROUNDS = at > 0 ? Number(process.argv[at + 1]) : 40;
const subtle = globalThis.crypto.subtle;
const P256 = { name: "ECDSA", namedCurve: "P-256" };
const ECDH = { name: "ECDH", namedCurve: "P-256" };

/** @param {number[]} xs */
function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? /** @type {number} */ (s[m]) : (/** @type {number} */ (s[m - 1]) + /** @type {number} */ (s[m])) / 2;
}

/**
 * Drive a machine over the link until it yields; the round trips it waited for after sending.
 * @template R
 * @param {WsTransport} link
 * @param {{ receive(data: Uint8Array): Promise<R | null>, dataToSend(): Uint8Array[] }} machine
 * @param {{ trips: number, sent: boolean }} count
 * @returns {Promise<R>}
 */
async function run(link, machine, count) {
  for (;;) {
    const data = await link.receive();
    if (count.sent) count.trips += 1; // an answer to what we sent: one round trip
    count.sent = false;
    const done = await machine.receive(data);
    const out = machine.dataToSend();
    for (const message of out) link.send(message);
    if (out.length) count.sent = true;
    if (done !== null) return done;
  }
}

/** One sample of the floor, in ms. @param {CryptoKeyPair} carLong @param {CryptoKeyPair} phoneLong */
async function floorSample(carLong, phoneLong) {
  const data = new Uint8Array(96);
  const start = performance.now();
  const car = await subtle.generateKey(ECDH, false, ["deriveBits"]);
  const phone = await subtle.generateKey(ECDH, false, ["deriveBits"]);
  await subtle.deriveBits({ name: "ECDH", public: phone.publicKey }, car.privateKey, 256);
  await subtle.deriveBits({ name: "ECDH", public: car.publicKey }, phone.privateKey, 256);
  const a = await subtle.sign({ name: "ECDSA", hash: "SHA-256" }, carLong.privateKey, data);
  const b = await subtle.sign({ name: "ECDSA", hash: "SHA-256" }, phoneLong.privateKey, data);
  await subtle.verify({ name: "ECDSA", hash: "SHA-256" }, carLong.publicKey, a, data);
  await subtle.verify({ name: "ECDSA", hash: "SHA-256" }, phoneLong.publicKey, b, data);
  return performance.now() - start;
}

async function main() {
  const root = mkdtempSync(join(tmpdir(), "tether-bench-webphone-"));
  const dir = join(root, "car");
  execFileSync(TETHER, ["vehicle", "init", "--dir", dir, "--name", "Bench car"]);
  const { code } = JSON.parse(execFileSync(TETHER, ["vehicle", "pairing-code", "--dir", dir, "--json"], { encoding: "utf8" }));
  const agent = spawn(TETHER, ["vehicle", "run", "--dir", dir, "--listen", "ws://127.0.0.1:0"], { stdio: ["ignore", "pipe", "ignore"] });
  try {
    let address = "";
    for await (const line of createInterface({ input: /** @type {import("node:stream").Readable} */ (agent.stdout) })) {
      if (line.startsWith("ready ")) {
        address = line.split(" ")[1] ?? "";
        break;
      }
    }
    if (!address) throw new Error("the car did not start");
    const endpoint = await crypto.generateKey("ECDSA");
    let link = await WsTransport.connect(address);
    const paired = await run(link, new PhonePairing(await codeSecret(code), endpoint, "Bench phone"), { trips: 0, sent: false });
    link.close();

    /** @type {Uint8Array | null} */
    let persistent = null;
    /** @param {boolean} fast */
    async function transaction(fast) {
      const start = performance.now();
      const count = { trips: 0, sent: false };
      link = await WsTransport.connect(address);
      const tx = new PhoneTransaction({ endpoint, vehicleKey: paired.vehicleKey, persistent: fast ? persistent : null, early: ["lock"] });
      const { session, persistent: next } = await run(link, tx, count);
      persistent = next;
      const result = await run(link, session, count);
      const took = performance.now() - start;
      if (result.kind !== "result" || !result.ok || session.fast !== fast) throw new Error(`unexpected ${JSON.stringify(result)}`);
      await session.close();
      for (const out of session.dataToSend()) link.send(out);
      link.close();
      return { took, trips: count.trips };
    }

    const carLong = await subtle.generateKey(P256, false, ["sign", "verify"]);
    const phoneLong = await subtle.generateKey(P256, false, ["sign", "verify"]);
    /** @type {number[]} */ const floor = [];
    /** @type {number[]} */ const standard = [];
    /** @type {number[]} */ const fast = [];
    let standardTrips = 0;
    let fastTrips = 0;
    await transaction(false); // warm: the car's first session, the JIT
    for (let i = 0; i < ROUNDS; i += 1) {
      floor.push(await floorSample(carLong, phoneLong));
      const s = await transaction(false);
      standard.push(s.took);
      standardTrips = s.trips;
      const f = await transaction(true);
      fast.push(f.took);
      fastTrips = f.trips;
    }
    const [mf, ms, mfast] = [median(floor), median(standard), median(fast)];
    console.log(`web phone in Node ${process.version}, car over ws:// loopback, ${ROUNDS} rounds (medians)`);
    console.log(`  crypto floor (WebCrypto: 2 keygen, 2 ECDH, 2 sign, 2 verify)  ${(mf * 1000).toFixed(0).padStart(8)} µs  1.00×`);
    console.log(`  standard transaction (lock)                                   ${(ms * 1000).toFixed(0).padStart(8)} µs  ${(ms / mf).toFixed(2)}×`);
    console.log(`  fast transaction (lock)                                       ${(mfast * 1000).toFixed(0).padStart(8)} µs  ${(mfast / mf).toFixed(2)}×`);
    console.log(
      `standard_over_floor=${(ms / mf).toFixed(2)} fast_over_standard=${(mfast / ms).toFixed(2)} ` +
        `fast_round_trips=${fastTrips} standard_round_trips=${standardTrips}`,
    );
  } finally {
    const exited = new Promise((resolve) => agent.once("exit", resolve));
    agent.kill("SIGTERM");
    await exited;
    rmSync(root, { recursive: true, force: true });
  }
}

await main();
