// The web phone's screen: pair with a car, then open and close it. The protocol work happens in
// protocol/ (sans-IO); this file only wires the machines to a WebSocket and to the page.

import * as crypto from "./protocol/crypto.js";
import { PhonePairing, PhoneTransaction, codeSecret } from "./protocol/phone.js";
import { BluetoothTransport } from "./protocol/bluetooth.js";
import { WsTransport } from "./protocol/transport.js";
import * as store from "./store.js";

/** @param {string} id @returns {HTMLElement} */
function $(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`no #${id}`);
  return node;
}

/** @type {store.Car | null} */
let chosen = null;

/**
 * The link to a car: "bluetooth" asks the browser to find it nearby, else a ws:// or wss:// URL.
 * @param {string} address @returns {Promise<WsTransport | BluetoothTransport>}
 */
function connect(address) {
  return address === "bluetooth" ? BluetoothTransport.connect() : WsTransport.connect(address);
}

/**
 * @param {HTMLElement} node @param {string} text @param {"ok" | "bad" | ""} [tone]
 */
function say(node, text, tone = "") {
  node.textContent = text; // text, never markup: a car's words are shown as given text only
  node.className = tone;
}

/**
 * Drive a machine over the link until it yields something.
 * @template R
 * @param {WsTransport | BluetoothTransport} link
 * @param {{ receive(data: Uint8Array): Promise<R | null>, dataToSend(): Uint8Array[] }} machine
 * @returns {Promise<R>}
 */
async function drive(link, machine) {
  for (;;) {
    const done = await machine.receive(await link.receive());
    for (const out of machine.dataToSend()) link.send(out);
    if (done !== null) return done;
  }
}

async function render() {
  const list = $("car-list");
  list.replaceChildren();
  const all = await store.cars();
  $("no-cars").hidden = all.length > 0;
  for (const car of all) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = car.name;
    button.setAttribute("aria-pressed", String(chosen?.name === car.name));
    button.addEventListener("click", () => choose(car));
    item.append(button);
    list.append(item);
  }
  if (!chosen && all[0]) choose(all[0]);
}

/** @param {store.Car} car */
function choose(car) {
  chosen = car;
  $("key").hidden = false;
  say($("key-title"), car.name);
  for (const button of document.querySelectorAll("#car-list button")) {
    button.setAttribute("aria-pressed", String(button.textContent === car.name));
  }
}

/** @param {SubmitEvent} event */
async function pair(event) {
  event.preventDefault();
  const form = /** @type {HTMLFormElement} */ (event.target);
  const data = new FormData(form);
  const address = String(data.get("address") ?? "").trim();
  const status = $("pair-status");
  const button = /** @type {HTMLButtonElement} */ (form.querySelector("button"));
  button.disabled = true;
  say(status, "Pairing…");
  try {
    const endpoint = await crypto.generateKey("ECDSA"); // made here, for this car only
    const machine = new PhonePairing(await codeSecret(String(data.get("code") ?? "")), endpoint, String(data.get("name") ?? "My phone"));
    const link = await connect(address);
    try {
      const paired = await drive(link, machine);
      const car = { name: paired.vehicleName, address, vehicleKey: paired.vehicleKey, endpoint, persistent: null, pairedAt: Date.now() };
      await store.save(car);
      say(status, `Paired with ${paired.vehicleName}.`, "ok");
      form.reset();
      chosen = car;
      await render();
      choose(car);
    } finally {
      link.close();
    }
  } catch (error) {
    say(status, `Not paired: ${describe(error)}`, "bad");
  } finally {
    button.disabled = false;
  }
}

/** @param {unknown} error */
function describe(error) {
  const code = error && typeof error === "object" && "code" in error ? String(error.code) : "";
  const text = error instanceof Error ? error.message : String(error);
  return code ? `${text} (${code})` : text;
}

const FAST = new Set(["lock", "unlock", "trunk"]); // §6.4: a fast session only opens and closes

/** @param {string} command */
async function send(command) {
  const car = chosen;
  if (!car) return;
  const outcome = $("outcome");
  const buttons = /** @type {NodeListOf<HTMLButtonElement>} */ (document.querySelectorAll("#key button"));
  buttons.forEach((b) => (b.disabled = true));
  say(outcome, `${command}…`);
  try {
    const link = await connect(car.address);
    try {
      const persistent = FAST.has(command) ? car.persistent : null;
      const tx = new PhoneTransaction({ endpoint: car.endpoint, vehicleKey: car.vehicleKey, persistent, early: [command] });
      const { session, persistent: next } = await drive(link, tx);
      car.persistent = next; // the car stored it before it sent Finished
      await store.save(car);
      const result = await drive(link, session);
      await session.close();
      for (const out of session.dataToSend()) link.send(out);
      const kind = session.fast ? "fast" : "standard";
      if (result.kind === "result" && result.ok) say(outcome, `${command}: done (${kind})`, "ok");
      else if (result.kind === "result") say(outcome, `${command} refused (${result.reason}): ${result.message}`, "bad");
      else say(outcome, "the car closed the session", "bad");
    } finally {
      link.close();
    }
  } catch (error) {
    say(outcome, `${command} failed: ${describe(error)}`, "bad");
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
}

$("pair-form").addEventListener("submit", (event) => void pair(/** @type {SubmitEvent} */ (event)));
for (const button of document.querySelectorAll("#key button")) {
  const command = button.getAttribute("data-command") ?? "";
  button.addEventListener("click", () => void send(command));
}
if ("serviceWorker" in navigator) {
  void navigator.serviceWorker.register("sw.js").catch(() => undefined); // offline at the car
}
void render();
