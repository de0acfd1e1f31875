// The service worker: the app shell and its modules from the cache, so the key opens the car
// with no network but the link to the car itself. Network first, so an update shows at once.

const CACHE = "tether-phone-v1";
const SHELL = [
  "./",
  "index.html",
  "app.js",
  "style.css",
  "manifest.webmanifest",
  "icon.svg",
  "store.js",
  "vault.js",
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

self.addEventListener("fetch", (event) => {
  const fetchEvent = /** @type {any} */ (event);
  const request = fetchEvent.request;
  const url = new URL(request.url);
  const scope = new URL(/** @type {any} */ (self).registration.scope).pathname;
  // Only the app's own files: the server's API (/v1/...) always goes to the network, uncached.
  if (request.method !== "GET" || url.origin !== self.location.origin || !url.pathname.startsWith(scope)) return;
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
