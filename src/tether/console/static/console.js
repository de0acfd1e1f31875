// The tether console: renders the world's state from a WebSocket and sends button clicks.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
// Where each phone's dot stands, per role: two phones in the same place stand side by side, and
// no place of one is within a dot's width of any place of the other.
const PLACES = {
  owner: { far: [24, 160], away: [70, 178], door: [172, 34], inside: [168, 100] },
  friend: { far: [24, 184], away: [96, 178], door: [196, 34], inside: [194, 100] },
};
const LOCKED = "Vehicle.Cabin.Door.Row1.DriverSide.IsLocked";
let busy = false;
let working = "";  // what the running action is, said while the page waits for it
let lastState = null;

function text(el, value) { if (el) el.textContent = value; }

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}

function renderCar(car) {
  const s = car.signals;
  const locked = s[LOCKED];
  text($("#car-name"), car.name ? `· ${car.name}` : "");
  const code = $("#pairing-code");
  code.hidden = !car.code;
  code.replaceChildren("Pairing code on the dashboard: ", el("strong", {}, car.code || ""));
  text($("#car-lock"), locked ? "locked" : "unlocked");
  text($("#car-trunk"), s["Vehicle.Body.Trunk.Rear.IsOpen"] ? "open" : "closed");
  const on = s["Vehicle.LowVoltageSystemState"] === "ON";
  text($("#car-ignition"), on ? "on" : "off");
  text($("#car-speed"), `${s["Vehicle.Speed"] ?? 0} km/h`);
  text($("#car-battery"), `${s["Vehicle.Powertrain.TractionBattery.StateOfCharge.Current"] ?? "-"} %`);
  text($("#car-seat"), `position ${s["Vehicle.Cabin.Seat.Row1.DriverSide.Position"] ?? 0}`);
  text($("#car-climate"), `${s["Vehicle.Cabin.HVAC.Station.Row1.Driver.Temperature"] ?? "-"} °C`);
  text($("#car-location"), `${(+s["Vehicle.CurrentLocation.Latitude"]).toFixed(4)}, ${(+s["Vehicle.CurrentLocation.Longitude"]).toFixed(4)}`);
  for (const id of ["door-fl", "door-rl", "door-fr", "door-rr"]) {
    $("#" + id).classList.toggle("unlocked", !locked);
  }
  $("#trunk").classList.toggle("open", !!s["Vehicle.Body.Trunk.Rear.IsOpen"]);
  $("#engine").classList.toggle("on", on);
  $("#body").classList.toggle("on", on);
  const seat = +(s["Vehicle.Cabin.Seat.Row1.DriverSide.Position"] || 0);
  $("#seat").setAttribute("cx", String(70 + Math.min(40, seat) / 2));
}

function renderPhones(phones) {
  for (const [role, phone] of Object.entries(phones)) {
    const places = PLACES[role] || PLACES.owner;
    const [x, y] = places[phone.place] || places.far;
    $(`#phone-${role}`).setAttribute("transform", `translate(${x} ${y})`);
    const list = $(`[data-testid="${role}-keys"]`);
    list.replaceChildren(...(phone.keys.length ? phone.keys.map((k) => el("li", {},
      `${k.car} `, el("span", { class: "tag" + (k.status === "active" ? "" : " revoked") }, k.status),
      ` ${k.role}: ${k.rights.join(", ")}`, k.fast ? " · fast ready" : "")) : [el("li", {}, "no key yet")]));
    const prompts = $(`[data-testid="${role}-prompts"]`);
    // One box per question the car put (its categories listed), not one per category.
    const groups = new Map();
    for (const p of phone.prompts) {
      const key = `${p.live}|${p.car}|${p.purpose}`;
      if (!groups.has(key)) groups.set(key, { ...p, categories: [] });
      groups.get(key).categories.push(p.category);
    }
    prompts.replaceChildren(...[...groups.values()].map((g) => {
      const box = el("div", { class: "prompt" + (g.live ? " live" : ""), role: g.live ? "alert" : "status" },
        el("p", {}, g.live ? `${g.car} asks for your data: "${g.purpose}". Your answer is kept for this car.`
                           : `${g.car} asked ("${g.purpose}"); nobody answered, so it got nothing. Set a rule for next time:`));
      for (const category of g.categories) {
        const row = el("div", { class: "ask" }, el("span", {}, category));
        for (const decision of ["allow", "deny"]) {
          row.append(el("button", { "data-action": "consent", "data-category": category, "data-decision": decision },
            decision === "allow" ? "Allow" : "Deny"));
        }
        box.append(row);
      }
      return box;
    }));
  }
}

function renderScreen(screen) {
  const box = $("#headunit");
  box.classList.toggle("empty", screen.status !== "shown");
  if (screen.status !== "shown") {
    box.replaceChildren(el("p", {}, screen.reason ? `Nothing on screen: forgotten (${screen.reason}).` : "Nothing on screen."));
    return;
  }
  const d = screen.data;
  const list = (items) => el("ul", {}, ...(items.length ? items : ["-"]).map((i) => el("li", {}, i)));
  box.replaceChildren(
    el("h3", {}, `Hello ${screen.who}`),
    el("p", {}, `Seat set to position ${d.seat ?? "-"}.`),
    el("h3", {}, "Contacts (from the phone)"), list(d.contacts || []),
    el("h3", {}, "Agenda"), list(d.agenda || []),
    el("p", {}, (screen.denied || []).length ? `Not shared: ${screen.denied.join(", ")}` : ""));
}

function renderAudit(audit) {
  $("#audit").replaceChildren(...audit.slice().reverse().map((e) => el("tr", {},
    el("td", {}, String(e.seq)), el("td", {}, e.who), el("td", {}, e.command),
    el("td", { class: e.result }, e.result), el("td", {}, e.reason || e.detail || ""))));
}

function stepItem(step) {
  const good = step.done;
  // The number is text, not a list marker: a marker's digits are clipped from 10 on.
  return el("li", { class: good ? "ok" : "no" }, el("span", { class: "n" }, `${step.n}.`),
    `${good ? "✓" : "✗"} ${step.phone === "attacker" ? "Attacker" : step.phone === "friend" ? "Bea" : "Ada"}: ${step.action} — ${step.outcome}`,
    step.ms != null ? ` (${step.ms.toFixed(1)} ms)` : "");
}

function renderWaiting() {
  // While an action runs the other buttons wait; the page says what for (and, when a phone's
  // question holds it up, whose answer and how long until no answer counts as "no").
  const box = $("#waiting");
  box.hidden = !busy;
  if (!busy) return;
  const asked = [];
  for (const phone of Object.values(lastState ? lastState.phones : {})) {
    const live = phone.prompts.filter((p) => p.live);
    if (live.length) asked.push([phone.name, live]);
  }
  if (!asked.length) {
    box.textContent = `Working: ${working}… the other buttons wait until it is done.`;
    return;
  }
  const [name, live] = asked[0];
  const left = Math.max(0, Math.round(Math.min(...live.map((p) => p.expires)) - Date.now() / 1000));
  box.textContent = `${live[0].car} asks ${name} for ${live.map((p) => p.category).join(", ")}: ` +
    `answer on ${name}'s phone below. The other buttons wait for the answer ` +
    `(${left} s left; no answer means no).`;
}

function render(state) {
  lastState = state;
  renderWaiting();
  renderCar(state.car);
  renderPhones(state.phones);
  renderScreen(state.screen);
  renderAudit(state.audit);
  const steps = state.steps;
  $("#steps").replaceChildren(...steps.map(stepItem));
  $("#steps").scrollTop = $("#steps").scrollHeight;
  const attacks = steps.filter((s) => s.phone === "attacker");
  $("[data-testid=attacks]").replaceChildren(...attacks.map(stepItem));
  $("#thief").setAttribute("visibility", attacks.length ? "visible" : "hidden");
  $("#thief").setAttribute("transform", "translate(330 180)");
  document.body.dataset.steps = String(steps.length);
}

async function act(button) {
  // An answer to a consent prompt is for the action still running (a start waits on it).
  const answering = button.dataset.action === "consent";
  if (busy && !answering) return;
  const panel = button.closest("[data-phone]");
  const body = { action: button.dataset.action, phone: panel ? panel.dataset.phone : "owner", args: {} };
  for (const key of ["command", "to", "kind", "category", "decision"]) {
    if (button.dataset[key]) body.args[key] = button.dataset[key];
  }
  if (body.action === "share") {
    body.args.rights = $$("input[name=right]:checked", panel).map((i) => i.value).join(",");
  }
  if (!answering) {
    busy = true;
    working = `${panel ? panel.querySelector("h2").firstChild.textContent.trim() : ""} ${button.textContent}`.trim();
    document.body.dataset.busy = "1";
    $$("button").forEach((b) => { b.disabled = true; b.title = "waits for the running action (see the top of the page)"; });
    renderWaiting();
  }
  try {
    const response = await fetch("/console/act", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    const step = await response.json();
    const state = await (await fetch("/console/state")).json();
    render(state);
    text($("#status"), `${step.done ? "✓" : "✗"} ${step.action}: ${step.outcome}`);
  } catch (err) {
    text($("#status"), `error: ${err}`);
  } finally {
    if (!answering) {
      busy = false;
      document.body.dataset.busy = "0";
      $$("button").forEach((b) => { b.disabled = false; b.removeAttribute("title"); });
      renderWaiting();
    }
  }
}

function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/console/ws`);
  ws.onopen = () => text($("#status"), "live");
  ws.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "state") render(message.state);
  };
  ws.onclose = () => { text($("#status"), "disconnected; retrying…"); setTimeout(connect, 1000); };
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  if (button) act(button);
});
setInterval(() => { if (busy) renderWaiting(); }, 1000);  // the countdown
connect();
