// The web phone's protocol modules against the real car: `tether vehicle run --listen ws://`
// as a process, paired with the code, unlocked (standard) and locked (fast, one round trip).

import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, test } from "node:test";

import * as crypto from "../../src/tether/webphone/protocol/crypto.js";
import { PhonePairing, PhoneTransaction, codeSecret } from "../../src/tether/webphone/protocol/phone.js";
import { WsTransport } from "../../src/tether/webphone/protocol/transport.js";

const TETHER = new URL("../../.venv/bin/tether", import.meta.url).pathname;
const root = mkdtempSync(join(tmpdir(), "tether-webphone-"));
const car = join(root, "car");
after(() => rmSync(root, { recursive: true, force: true }));

/** @param {string[]} args @returns {any} */
function tetherJson(...args) {
  return JSON.parse(execFileSync(TETHER, [...args, "--json"], { encoding: "utf8" }));
}

/** Start the car; its ws:// address once it says ready. */
async function startCar() {
  const agent = spawn(TETHER, ["vehicle", "run", "--dir", car, "--listen", "ws://127.0.0.1:0"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const lines = createInterface({ input: /** @type {import("node:stream").Readable} */ (agent.stdout) });
  for await (const line of lines) {
    if (line.startsWith("ready ")) return { agent, address: line.split(" ")[1] ?? "" };
  }
  throw new Error("the car did not start");
}

/** Stop the car and wait until it has (its store closed, its lock released). @param {import("node:child_process").ChildProcess} agent */
async function stop(agent) {
  const exited = new Promise((resolve) => agent.once("exit", resolve));
  agent.kill("SIGTERM");
  await exited;
}

/**
 * Drive a machine over the transport until it yields something.
 * @template R
 * @param {WsTransport} transport
 * @param {{ receive(data: Uint8Array): Promise<R | null>, dataToSend(): Uint8Array[] }} machine
 * @returns {Promise<R>}
 */
async function run(transport, machine) {
  for (;;) {
    const done = await machine.receive(await transport.receive());
    for (const out of machine.dataToSend()) transport.send(out);
    if (done !== null) return done;
  }
}

test("pair, unlock (standard) and lock (fast) against the car over WebSocket", async () => {
  execFileSync(TETHER, ["vehicle", "init", "--dir", car, "--name", "Web car"]);
  const { code } = tetherJson("vehicle", "pairing-code", "--dir", car);
  const { agent, address } = await startCar();
  try {
    const endpoint = await crypto.generateKey("ECDSA"); // non-extractable: the browser's own
    const pairing = new PhonePairing(await codeSecret(code), endpoint, "Web phone");
    let link = await WsTransport.connect(address);
    const paired = await run(link, pairing);
    link.close();
    assert.equal(paired.vehicleName, "Web car");

    /** @type {Uint8Array | null} */
    let persistent = null;
    for (const [command, fast] of /** @type {Array<[string, boolean]>} */ ([["unlock", false], ["lock", true]])) {
      link = await WsTransport.connect(address);
      /** @type {PhoneTransaction} */
      const tx = new PhoneTransaction({ endpoint, vehicleKey: paired.vehicleKey, persistent, early: [command] });
      /** @type {{ session: import("../../src/tether/webphone/protocol/phone.js").PhoneSession, persistent: Uint8Array }} */
      const { session, persistent: next } = await run(link, tx);
      persistent = next;
      assert.equal(session.fast, fast);
      const result = await run(link, session);
      assert.deepEqual([result.kind, "ok" in result && result.ok], ["result", true]);
      await session.close();
      for (const out of session.dataToSend()) link.send(out);
      link.close();
    }
    const audit = tetherJson("vehicle", "audit", "--dir", car);
    const done = audit.entries.map((/** @type {any} */ e) => `${e.command} ${e.result} ${e.detail}`);
    assert.ok(done.includes("unlock ok standard") && done.includes("lock ok fast"), done.join("\n"));
  } finally {
    await stop(agent);
  }
});

test("a wrong code is refused by the car with the tries left", async () => {
  const { code } = tetherJson("vehicle", "pairing-code", "--dir", car);
  const { agent, address } = await startCar();
  try {
    const wrong = code === "11111111" ? "22222222" : "11111111";
    const link = await WsTransport.connect(address);
    const pairing = new PhonePairing(await codeSecret(wrong), await crypto.generateKey("ECDSA"), "Mallory");
    await assert.rejects(run(link, pairing), { code: "wrong_code" });
    link.close();
    await assert.rejects(codeSecret("1234"), { code: "invalid_code" });
  } finally {
    await stop(agent);
  }
});
