// The web phone's screen: pair with a car, then open and close it. The protocol work happens in
// protocol/ (sans-IO); this file only wires the machines to a WebSocket and to the page.

import { b64url, toHex, unb64url } from "./protocol/bytes.js";
import * as crypto from "./protocol/crypto.js";
import * as remote from "./protocol/remote.js";
import * as sharing from "./protocol/sharing.js";
import { PhonePairing, PhoneTransaction, codeSecret } from "./protocol/phone.js";
import { BluetoothTransport } from "./protocol/bluetooth.js";
import { WsTransport } from "./protocol/transport.js";
import { readQrFile, scanCamera, showQr } from "./qr.js";
import * as store from "./store.js";
import * as vault from "./vault.js";

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

/**
 * Ask the person at the screen; no answer in 20 s means no.
 * @param {string} category @param {string} purpose @returns {Promise<boolean>}
 */
function askPerson(category, purpose) {
  const dialog = /** @type {HTMLDialogElement} */ ($("ask"));
  say($("ask-text"), `${chosen?.name ?? "The car"} asks for your ${category}: “${purpose}”`);
  dialog.showModal();
  return new Promise((resolve) => {
    const timer = setTimeout(() => done(false), 20_000);
    /** @param {boolean} yes */
    function done(yes) {
      clearTimeout(timer);
      dialog.close();
      resolve(yes);
    }
    for (const button of dialog.querySelectorAll("button")) {
      button.onclick = () => done(button.value === "allow");
    }
  });
}

async function renderData() {
  const car = chosen;
  const consent = $("consent");
  consent.replaceChildren();
  if (car) {
    for (const category of vault.CATEGORIES) {
      const label = document.createElement("label");
      label.textContent = `${category} `;
      const select = document.createElement("select");
      select.dataset["testid"] = `consent-${category}`;
      for (const decision of ["allow", "ask", "deny"]) select.append(new Option(decision, decision));
      select.value = (await store.rule(car.name, category)) ?? "allow";
      select.addEventListener("change", () => {
        void store.setRule(car.name, category, /** @type {"allow" | "ask" | "deny"} */ (select.value));
      });
      label.append(select);
      consent.append(label);
    }
  }
  const log = $("disclosures");
  log.replaceChildren();
  for (const entry of (await store.disclosures()).slice(-20).reverse()) {
    const item = document.createElement("li");
    item.textContent = `${new Date(entry.at).toLocaleTimeString()} ${entry.car}: ${entry.category} ${entry.decision}`;
    log.append(item);
  }
}

/** @param {Event} event */
async function importFile(event) {
  const input = /** @type {HTMLInputElement} */ (event.target);
  const file = input.files?.[0];
  if (!file) return;
  try {
    const counts = await vault.importText(await file.text());
    say($("data-status"), `Imported ${Object.entries(counts).map(([c, n]) => `${n} ${c}`).join(", ")}.`, "ok");
  } catch (error) {
    say($("data-status"), `Not imported: ${describe(error)}`, "bad");
  }
  input.value = "";
}

/** @param {SubmitEvent} event */
async function saveProfile(event) {
  event.preventDefault();
  const data = new FormData(/** @type {HTMLFormElement} */ (event.target));
  const position = Number(data.get("position"));
  const temperature = Number(data.get("temperature"));
  /** @type {Record<string, unknown>} */
  const profile = {};
  if (data.get("position") !== "" && position >= 0 && position <= 1000) profile["seat"] = { position };
  if (data.get("temperature") !== "" && temperature >= 10 && temperature <= 35) profile["climate"] = { temperature };
  await vault.saveProfile(profile);
  say($("data-status"), "Profile saved.", "ok");
}

/** (Owner) A single-use invitation through this server. */
async function invite() {
  const car = chosen;
  if (!car) return;
  const status = $("share-status");
  try {
    const vid = toHex(await crypto.keyId(car.vehicleKey));
    const answer = await remote.call(car.endpoint, "POST", `/v1/vehicles/${vid}/invitations`, { label: "", ttl: 7 * 86400 });
    const link = sharing.inviteLink(location.origin, String(answer.token));
    /** @type {HTMLTextAreaElement} */ ($("invite-link")).value = link;
    showQr($("invite-qr"), link, "The invitation as a QR code");
    say(status, "Send the invitation; then grant the request it brings.", "ok");
  } catch (error) {
    say(status, `No invitation: ${describe(error)}`, "bad");
  }
}

/** (Owner) Sign a grant for every pending request, with the terms chosen above, and post it. */
async function grantPending() {
  const car = chosen;
  if (!car) return;
  const status = $("share-status");
  try {
    const vid = toHex(await crypto.keyId(car.vehicleKey));
    const { requests } = await remote.call(car.endpoint, "GET", `/v1/vehicles/${vid}/requests`);
    const rights = Array.from(document.querySelectorAll("#share input[name=right]:checked"), (i) => /** @type {HTMLInputElement} */ (i).value);
    const hours = Number(/** @type {HTMLInputElement} */ ($("share-hours")).value) || 24;
    const now = Math.floor(Date.now() / 1000);
    let granted = 0;
    for (const request of /** @type {any[]} */ (requests ?? []).filter((r) => r.status === "pending")) {
      const wanted = { key: unb64url(String(request.public_key)), label: String(request.label ?? "") };
      const made = await sharing.share(car, wanted, { rights, notBefore: now - 60, expires: now + hours * 3600, now });
      await remote.call(car.endpoint, "POST", `/v1/vehicles/${vid}/grants`, { bundle: b64url(made.bundle) });
      car.issued = [...(car.issued ?? []), { serial: made.serial, label: wanted.label || "a friend", rights: made.rights, expires: made.expires, revoked: false }];
      granted += 1;
    }
    await store.save(car);
    renderIssued(car);
    say(status, granted ? `Granted ${granted} request${granted > 1 ? "s" : ""}.` : "No request is waiting.", granted ? "ok" : "");
  } catch (error) {
    say(status, `Not granted: ${describe(error)}`, "bad");
  }
}

/** (Friend) Answer an invitation: a new key for that car, its request sent through the server. */
async function answerInvite() {
  const status = $("friend-status");
  try {
    const { server, token } = sharing.readInvite(/** @type {HTMLTextAreaElement} */ ($("invitation")).value.trim());
    if (server !== location.origin) throw new Error("the invitation is for another server; open the app there");
    const endpoint = await crypto.generateKey("ECDSA");
    const body = { public_key: b64url(endpoint.publicKey), label: "" };
    await remote.call(endpoint, "POST", `/v1/invitations/${encodeURIComponent(token)}/requests`, body);
    const id = toHex(await crypto.keyId(endpoint.publicKey));
    await store.saveRequest({ id, endpoint, label: "", at: Date.now(), server });
    say(status, "Requested: once the owner grants it, fetch your key.", "ok");
  } catch (error) {
    say(status, `Not requested: ${describe(error)}`, "bad");
  }
}

/** (Friend) Collect a grant waiting in the server's mailbox for one of this phone's requests. */
async function fetchKey() {
  const status = $("friend-status");
  for (const request of await store.requests()) {
    if (!request.server) continue;
    try {
      const { grants } = await remote.call(request.endpoint, "GET", "/v1/mailbox");
      for (const item of /** @type {any[]} */ (grants ?? [])) {
        /** @type {HTMLTextAreaElement} */ ($("grant-link")).value = sharing.bundleLink(unb64url(String(item.bundle)));
        await acceptGrant();
        return;
      }
    } catch (error) {
      say(status, `Nothing fetched: ${describe(error)}`, "bad");
      return;
    }
  }
  say(status, "No key is waiting yet.");
}

async function askForKey() {
  const endpoint = await crypto.generateKey("ECDSA"); // for the friend's car, made here
  const id = toHex(await crypto.keyId(endpoint.publicKey));
  await store.saveRequest({ id, endpoint, label: "", at: Date.now() });
  const link = sharing.requestLink(endpoint.publicKey, "");
  /** @type {HTMLTextAreaElement} */ ($("request-link")).value = link;
  showQr($("request-qr"), link, "The key request as a QR code");
  say($("friend-status"), "Send the link to the car's owner, then paste their grant below.");
}

async function acceptGrant() {
  const link = /** @type {HTMLTextAreaElement} */ ($("grant-link")).value.trim();
  const status = $("friend-status");
  const now = Date.now() / 1000;
  for (const request of await store.requests()) {
    try {
      const got = await sharing.accept(link, request.endpoint.publicKey, now);
      /** @type {store.Car} */
      const car = {
        name: got.name,
        address: got.address,
        vehicleKey: got.vehicleKey,
        endpoint: request.endpoint,
        persistent: null,
        pairedAt: Date.now(),
        role: "friend",
        credential: got.credential,
        enrolled: false,
        ownerKey: got.ownerKey, // so that a key holding share can hand on a checkable bundle
        rights: got.rights,
      };
      await store.save(car);
      await store.dropRequest(request.id);
      say(status, `Accepted a key to ${got.name}: ${got.rights.join(", ")}.`, "ok");
      chosen = car;
      await render();
      choose(car);
      return;
    } catch (error) {
      if (error && typeof error === "object" && "code" in error && error.code === "grant_key_mismatch") continue;
      say(status, `Not accepted: ${describe(error)}`, "bad");
      return;
    }
  }
  say(status, "Not accepted: this grant is for a key this phone did not ask with", "bad");
}

async function shareCar() {
  const car = chosen;
  if (!car) return;
  const status = $("share-status");
  try {
    const request = sharing.readRequest(/** @type {HTMLTextAreaElement} */ ($("share-request")).value.trim());
    const rights = Array.from(document.querySelectorAll("#share input[name=right]:checked"), (i) => /** @type {HTMLInputElement} */ (i).value);
    const hours = Number(/** @type {HTMLInputElement} */ ($("share-hours")).value) || 24;
    const now = Math.floor(Date.now() / 1000);
    const made = await sharing.share(car, request, { rights, notBefore: now - 60, expires: now + hours * 3600, now });
    /** @type {HTMLTextAreaElement} */ ($("share-link")).value = made.link;
    showQr($("share-qr"), made.link, "The key as a QR code");
    car.issued = [...(car.issued ?? []), { serial: made.serial, label: request.label || "a friend", rights: made.rights, expires: made.expires, revoked: false }];
    await store.save(car);
    renderIssued(car);
    say(status, `A key to ${car.name} for ${hours} h: ${rights.join(", ")}.`, "ok");
  } catch (error) {
    say(status, `Not shared: ${describe(error)}`, "bad");
  }
}

/** The keys this owner issued for the car, each with a Revoke button. @param {store.Car} car */
function renderIssued(car) {
  const list = $("issued");
  list.replaceChildren();
  for (const [index, grant] of (car.issued ?? []).entries()) {
    const item = document.createElement("li");
    const until = new Date(grant.expires * 1000).toLocaleString();
    item.textContent = `${grant.label}: ${grant.rights.join(", ")} until ${until} `;
    if (grant.revoked) {
      item.append("(revoked)");
    } else if (grant.queued) {
      item.append("(revocation queued on the server)");
    } else if (car.role === "friend") {
      item.append("(only the owner can revoke it)");
    } else {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = "Revoke";
      button.dataset["testid"] = `revoke-${index}`;
      button.addEventListener("click", () => void revoke(car, index));
      item.append(button);
    }
    list.append(item);
  }
}

/**
 * Revoke one issued grant: signed here, then delivered to the car in a session, or queued on the
 * server when "Through the server" is ticked or the car cannot be reached; believed only when
 * the car says (in the session, or with a receipt it signed) that it is durable.
 * @param {store.Car} car @param {number} index
 */
async function revoke(car, index) {
  const grant = car.issued?.[index];
  if (!grant) return;
  const status = $("share-status");
  try {
    const seq = Math.max((car.revocationSeq ?? 0) + 1, Date.now());
    car.revocationSeq = seq;
    await store.save(car);
    const raw = await sharing.revocation(car, [grant.serial], seq, Date.now() / 1000);
    const away = /** @type {HTMLInputElement} */ ($("remote")).checked;
    const link = away ? null : await connect(car.address).catch(() => null);
    if (link === null) {
      await remote.queueRevocation(car, raw);
      grant.queued = raw;
      await store.save(car);
      renderIssued(car);
      say(status, `Queued on the server: ${grant.label}'s key is revoked once the car confirms it.`);
      for (let tries = 0; tries < 40 && grant.queued; tries += 1) {
        await new Promise((resolve) => setTimeout(resolve, 500));
        await settle(car, grant);
      }
      return;
    }
    try {
      const tx = new PhoneTransaction({ endpoint: car.endpoint, vehicleKey: car.vehicleKey, persistent: car.persistent, early: [] });
      const { session, persistent } = await drive(link, tx);
      car.persistent = persistent;
      await session.deliverRevocation(raw);
      for (const out of session.dataToSend()) link.send(out);
      const answer = await drive(link, session);
      await session.close();
      for (const out of session.dataToSend()) link.send(out);
      if (answer.kind === "revocation" && answer.ok) {
        grant.revoked = true;
        say(status, `Revoked ${grant.label}'s key.`, "ok");
      } else {
        say(status, `Not revoked: ${"message" in answer ? answer.message : "the car closed the session"}`, "bad");
      }
    } finally {
      link.close();
    }
    await store.save(car);
    renderIssued(car);
  } catch (error) {
    say(status, `Not revoked: ${describe(error)}`, "bad");
  }
}

/**
 * Ask the server for the car's receipt of a queued revocation; true once there is one.
 * @param {store.Car} car @param {store.Issued} grant
 */
async function settle(car, grant) {
  if (!grant.queued) return true;
  const receipt = await remote.revocationReceipt(car, grant.queued).catch(() => null);
  if (receipt === null) return false;
  const status = $("share-status");
  delete grant.queued;
  if (receipt.ok) {
    grant.revoked = true;
    say(status, `Revoked ${grant.label}'s key (the car's signed receipt).`, "ok");
  } else {
    say(status, `The car refused the revocation (${receipt.reason}).`, "bad");
  }
  await store.save(car);
  if (chosen === car) renderIssued(car);
  return true;
}

/** @param {store.Car} car */
function choose(car) {
  chosen = car;
  $("key").hidden = false;
  say($("key-title"), car.name);
  for (const button of document.querySelectorAll("#car-list button")) {
    button.setAttribute("aria-pressed", String(button.textContent === car.name));
  }
  // A shared key may hand on what it holds only when it holds share (a sub-grant, §9.2).
  const held = car.role === "friend" ? (car.rights ?? []) : sharing.RIGHTS;
  $("share").hidden = !held.includes("share");
  for (const box of /** @type {NodeListOf<HTMLInputElement>} */ (document.querySelectorAll("#share input[name=right]"))) {
    box.disabled = !held.includes(box.value);
    if (box.disabled) box.checked = false;
  }
  $("invite").hidden = car.role === "friend"; // invitations are the owner's to make
  renderIssued(car);
  for (const grant of car.issued ?? []) if (grant.queued) void settle(car, grant);
  void renderData();
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
      /** @type {store.Car} */
      const car = { name: paired.vehicleName, address, vehicleKey: paired.vehicleKey, endpoint, persistent: null, pairedAt: Date.now(), role: "owner" };
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
  const buttons = /** @type {NodeListOf<HTMLButtonElement>} */ (document.querySelectorAll("#key .buttons button"));
  buttons.forEach((b) => (b.disabled = true));
  say(outcome, `${command}…`);
  if (/** @type {HTMLInputElement} */ ($("remote")).checked) {
    try {
      // Counters only grow, even across phones of one owner: max(last + 1, now in ms) (§14).
      const counter = Math.max((car.remoteCounter ?? 0) + 1, Date.now());
      car.remoteCounter = counter;
      await store.save(car);
      const result = await remote.command(car, command, counter);
      if (result.ok) say(outcome, `${command}: done (remote)`, "ok");
      else say(outcome, `${command} refused (${result.reason}): ${result.message}`, "bad");
    } catch (error) {
      say(outcome, `${command} failed: ${describe(error)}`, "bad");
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
    return;
  }
  try {
    const link = await connect(car.address);
    try {
      const persistent = FAST.has(command) ? car.persistent : null;
      const answerData = (/** @type {Array<{ category: string, query: any }>} */ items, /** @type {string} */ purpose) =>
        vault.answer(car.name, items, purpose, askPerson);
      // A shared key presents its credential until the car has enrolled it (§6.2).
      const credential = car.credential && !car.enrolled ? { credential: car.credential } : {};
      const tx = new PhoneTransaction({ endpoint: car.endpoint, vehicleKey: car.vehicleKey, persistent, early: [command], answerData, ...credential });
      const { session, persistent: next } = await drive(link, tx);
      car.persistent = next; // the car stored it before it sent Finished
      car.enrolled = true;
      await store.save(car);
      const result = await drive(link, session);
      await session.close();
      for (const out of session.dataToSend()) link.send(out);
      const kind = session.fast ? "fast" : "standard";
      if (result.kind === "result" && result.ok) say(outcome, `${command}: done (${kind})`, "ok");
      else if (result.kind === "result") say(outcome, `${command} refused (${result.reason}): ${result.message}`, "bad");
      else say(outcome, "the car closed the session", "bad");
      await renderData();
    } finally {
      link.close();
    }
  } catch (error) {
    say(outcome, `${command} failed: ${describe(error)}`, "bad");
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
}

/**
 * A scanned link goes where it belongs: an invitation is answered, a key request waits for the
 * owner's terms, a key is accepted.
 * @param {string | null} text
 */
async function useScanned(text) {
  const status = $("scan-status");
  if (!text) {
    say(status, "No QR code found; try again closer, or paste the link.", "bad");
    return;
  }
  const link = text.trim();
  if (link.startsWith(sharing.INVITE_LINK)) {
    /** @type {HTMLTextAreaElement} */ ($("invitation")).value = link;
    say(status, "An invitation: asking for a key.", "ok");
    await answerInvite();
  } else if (link.startsWith(sharing.REQUEST_LINK)) {
    /** @type {HTMLTextAreaElement} */ ($("share-request")).value = link;
    /** @type {HTMLDetailsElement} */ ($("share")).open = true;
    say(status, chosen ? `A key request: choose what they may do with ${chosen.name}, then Share.` : "A key request: pair a car first.", "ok");
  } else if (link.startsWith(sharing.GRANT_LINK)) {
    /** @type {HTMLTextAreaElement} */ ($("grant-link")).value = link;
    say(status, "A key: checking it.", "ok");
    await acceptGrant();
  } else {
    say(status, "That QR code is not a tether link.", "bad"); // its text is not shown: not ours
  }
}

/** @type {AbortController | null} */
let scanning = null;

async function scanWithCamera() {
  const button = /** @type {HTMLButtonElement} */ ($("scan-camera"));
  const video = /** @type {HTMLVideoElement} */ ($("scan-video"));
  if (scanning) {
    scanning.abort();
    return;
  }
  scanning = new AbortController();
  button.textContent = "Stop the camera";
  video.hidden = false;
  say($("scan-status"), "Point the camera at the code.");
  try {
    const text = await scanCamera(video, scanning.signal);
    if (!scanning.signal.aborted) await useScanned(text);
    else say($("scan-status"), "");
  } catch (error) {
    say($("scan-status"), `No camera: ${describe(error)}; choose a picture or paste the link.`, "bad");
  } finally {
    scanning = null;
    video.hidden = true;
    button.textContent = "Use the camera";
  }
}

/** @param {Event} event */
async function scanFile(event) {
  const input = /** @type {HTMLInputElement} */ (event.target);
  const file = input.files?.[0];
  input.value = "";
  if (!file) return;
  try {
    await useScanned(await readQrFile(file));
  } catch (error) {
    say($("scan-status"), `Not read: ${describe(error)}`, "bad");
  }
}

$("scan-camera").addEventListener("click", () => void scanWithCamera());
$("scan-file").addEventListener("change", (event) => void scanFile(event));
$("pair-form").addEventListener("submit", (event) => void pair(/** @type {SubmitEvent} */ (event)));
$("ask-key").addEventListener("click", () => void askForKey());
$("invite").addEventListener("click", () => void invite());
$("grant-pending").addEventListener("click", () => void grantPending());
$("answer-invite").addEventListener("click", () => void answerInvite());
$("fetch-key").addEventListener("click", () => void fetchKey());
$("accept").addEventListener("click", () => void acceptGrant());
$("share-button").addEventListener("click", () => void shareCar());
$("profile-form").addEventListener("submit", (event) => void saveProfile(/** @type {SubmitEvent} */ (event)));
$("data").querySelector("input[type=file]")?.addEventListener("change", (event) => void importFile(event));
for (const button of document.querySelectorAll("#key button[data-command]")) {
  const command = button.getAttribute("data-command") ?? "";
  button.addEventListener("click", () => void send(command));
}
if ("serviceWorker" in navigator) {
  // Offline at the car: the worker keeps the shell, and every module this page loaded (the
  // libraries' files are many, and only the page knows which it imported).
  void navigator.serviceWorker.register("sw.js").catch(() => undefined);
  void navigator.serviceWorker.ready.then((registration) => {
    const loaded = performance.getEntriesByType("resource").map((entry) => entry.name);
    registration.active?.postMessage({ cache: [location.href, ...loaded] });
  });
}
void render();
