// The vault in the browser: contacts (vCard), agenda (iCalendar, recurring events expanded),
// a profile (seat, climate), favourites and media; and the answers to the car's data requests,
// which consent decides per car and category. Records have the shapes of docs/protocol.md §8.2.

import ICAL from "ical.js";

import * as store from "./store.js";

export const CATEGORIES = ["contacts", "calendar", "favourites", "media", "profile"];
const HORIZON_DAYS = 90;

/** @param {string} text @returns {any[]} */
function components(text) {
  const parsed = ICAL.parse(text);
  const all = Array.isArray(parsed[0]) ? parsed : [parsed];
  return all.map((/** @type {any} */ jcal) => new ICAL.Component(jcal));
}

/** Contacts from vCard text. @param {string} text */
export function parseVcards(text) {
  return components(text)
    .filter((card) => card.name === "vcard")
    .map((card) => ({
      name: String(card.getFirstPropertyValue("fn") ?? ""),
      phones: card.getAllProperties("tel").map((/** @type {any} */ p) => String(p.getFirstValue())),
      emails: card.getAllProperties("email").map((/** @type {any} */ p) => String(p.getFirstValue())),
    }))
    .filter((contact) => contact.name);
}

/** Events from now to the horizon, recurring ones expanded. @param {string} text @param {Date} now */
export function parseIcal(text, now) {
  const until = new Date(now.getTime() + HORIZON_DAYS * 86_400_000);
  /** @type {Array<{ title: string, start: string, end: string, location: string }>} */
  const out = [];
  for (const calendar of components(text)) {
    for (const vevent of calendar.getAllSubcomponents("vevent")) {
      const event = new ICAL.Event(vevent);
      const length = event.endDate ? event.endDate.toJSDate().getTime() - event.startDate.toJSDate().getTime() : 0;
      const iterator = event.iterator();
      for (let next = iterator.next(), n = 0; next && n < 1000; next = iterator.next(), n += 1) {
        const start = next.toJSDate();
        if (start > until) break;
        if (start.getTime() + length < now.getTime()) continue;
        out.push({
          title: String(event.summary ?? ""),
          start: start.toISOString(),
          end: new Date(start.getTime() + length).toISOString(),
          location: String(event.location ?? ""),
        });
      }
    }
  }
  return out.sort((a, b) => a.start.localeCompare(b.start));
}

/** Import one file by its contents; the categories it filled, with counts. @param {string} text */
export async function importText(text, now = new Date()) {
  const head = text.trimStart().slice(0, 40).toUpperCase();
  if (head.startsWith("BEGIN:VCARD")) {
    const contacts = parseVcards(text);
    await store.setVault("contacts", [...(await store.vault("contacts")), ...contacts]);
    return { contacts: contacts.length };
  }
  if (head.startsWith("BEGIN:VCALENDAR")) {
    const events = parseIcal(text, now);
    await store.setVault("calendar", events);
    return { calendar: events.length };
  }
  throw new TypeError("a vCard (.vcf) or iCalendar (.ics) file");
}

/** The driver's profile (seat, climate). @param {Record<string, unknown>} profile */
export async function saveProfile(profile) {
  await store.setVault("profile", profile);
}

/** What a request for ``category`` with ``asked`` may see (before consent). @param {string} category @param {any} asked */
export async function query(category, asked) {
  const data = await store.vault(category);
  if (category === "contacts") {
    const prefix = String(asked?.prefix ?? "").toLowerCase();
    const limit = Math.max(0, Math.min(Number(asked?.limit ?? 50), 500));
    return /** @type {Array<{ name: string }>} */ (data)
      .filter((c) => c.name.toLowerCase().startsWith(prefix))
      .sort((a, b) => a.name.localeCompare(b.name))
      .slice(0, limit);
  }
  if (category === "calendar") {
    const since = Date.parse(String(asked?.from ?? "")) || -Infinity;
    const until = Date.parse(String(asked?.to ?? "")) || Infinity;
    return /** @type {Array<{ start: string }>} */ (data).filter((e) => {
      const at = Date.parse(e.start);
      return since <= at && at < until;
    });
  }
  if (category === "favourites" && asked?.kind) {
    return /** @type {Array<{ kind?: string }>} */ (data).filter((f) => f.kind === asked.kind);
  }
  return data;
}

/**
 * The car's data request answered by consent: allow gives, deny refuses, ask asks the person.
 * Every decision is logged on the phone (the car keeps nothing).
 * @param {string} car @param {Array<{ category: string, query: any }>} items @param {string} purpose
 * @param {(category: string, purpose: string) => Promise<boolean>} ask
 * @returns {Promise<{ granted: Record<string, unknown>, denied: string[] }>}
 */
export async function answer(car, items, purpose, ask) {
  /** @type {Record<string, unknown>} */
  const granted = {};
  const denied = [];
  for (const item of items) {
    const category = item.category;
    const known = CATEGORIES.includes(category);
    const decision = known ? ((await store.rule(car, category)) ?? "allow") : "deny"; // an owner's own car
    const yes = decision === "allow" || (decision === "ask" && (await ask(category, purpose)));
    if (yes) granted[category] = await query(category, item.query ?? {});
    else denied.push(category);
    await store.logDisclosure({ at: Date.now(), car, category, purpose, decision: yes ? "disclosed" : "refused" });
  }
  return { granted, denied };
}
