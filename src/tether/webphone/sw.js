// The service worker: the app shell and its modules from the cache, so the key opens the car
// with no network but the link to the car itself. Network first, so an update shows at once.

const CACHE = "tether-phone-v2";
const SHELL = [
  "./",
  "index.html",
  "app.js",
  "style.css",
  "manifest.webmanifest",
  "icon.svg",
  "store.js",
  "vault.js",
  "qr.js",
  "protocol/bluetooth.js",
  "protocol/bytes.js",
  "protocol/codec.js",
  "protocol/cose.js",
  "protocol/crypto.js",
  "protocol/gatt.js",
  "protocol/phone.js",
  "protocol/remote.js",
  "protocol/sharing.js",
  "protocol/spake2plus.js",
  "protocol/transport.js",
];

self.addEventListener("install", (event) => {
  const ready = caches.open(CACHE).then((cache) => cache.addAll(SHELL));
  /** @type {any} */ (event).waitUntil(ready);
});

/** @param {string} href */
function ours(href) {
  const url = new URL(href);
  const scope = new URL(/** @type {any} */ (self).registration.scope).pathname;
  return url.origin === self.location.origin && url.pathname.startsWith(scope);
}

self.addEventListener("activate", (event) => {
  // Old versions' caches go; this worker serves the open page at once.
  const cleaned = caches.keys().then((names) => Promise.all(names.filter((n) => n !== CACHE).map((n) => caches.delete(n))));
  /** @type {any} */ (event).waitUntil(cleaned.then(() => /** @type {any} */ (self).clients.claim()));
});

// The page names the files it loaded (its modules and their libraries): keep them for offline.
self.addEventListener("message", (event) => {
  const message = /** @type {any} */ (event).data;
  if (!message || !Array.isArray(message.cache)) return;
  const wanted = message.cache.filter((/** @type {unknown} */ href) => typeof href === "string" && ours(href)).slice(0, 500);
  /** @type {any} */ (event).waitUntil(caches.open(CACHE).then((cache) => cache.addAll(wanted)).catch(() => undefined));
});

self.addEventListener("fetch", (event) => {
  const fetchEvent = /** @type {any} */ (event);
  const request = fetchEvent.request;
  // Only the app's own files: the server's API (/v1/...) always goes to the network, uncached.
  if (request.method !== "GET" || !ours(request.url)) return;
  fetchEvent.respondWith(
    fetch(request)
      .then((response) => {
        const copy = response.clone();
        void caches.open(CACHE).then((cache) => cache.put(request, copy));
        return response;
      })
      .catch(() => caches.match(request).then((hit) => hit ?? Response.error())),
  );
});
