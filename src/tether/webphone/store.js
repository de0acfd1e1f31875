// The phone's state in IndexedDB: its cars (with their non-extractable keys), its vault, the
// consent rules and the disclosure log. CryptoKey objects are stored as they are, so a
// non-extractable key stays non-extractable; nothing else holds it.

const DB = "tether-phone";

/**
 * @typedef {{ name: string, address: string, vehicleKey: Uint8Array,
 *   endpoint: { privateKey: CryptoKey, publicKey: Uint8Array },
 *   persistent: Uint8Array | null, pairedAt: number, remoteCounter?: number,
 *   role?: "owner" | "friend", credential?: Uint8Array, enrolled?: boolean,
 *   ownerKey?: Uint8Array, rights?: string[],
 *   issued?: Issued[], revocationSeq?: number }} Car
 * @typedef {{ serial: Uint8Array, label: string, rights: string[], expires: number,
 *   revoked: boolean, queued?: Uint8Array }} Issued a key this phone gave; ``queued``: the
 *   revocation waiting on the server for the car's receipt
 * @typedef {{ id: string, endpoint: { privateKey: CryptoKey, publicKey: Uint8Array },
 *   label: string, at: number, server?: string }} KeyRequest
 * @typedef {{ at: number, car: string, category: string, purpose: string,
 *   decision: "disclosed" | "refused" }} Disclosure
 */

/** @returns {Promise<IDBDatabase>} */
function openDb() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB, 3);
    request.onupgradeneeded = () => {
      const db = request.result;
      for (const [name, options] of /** @type {Array<[string, IDBObjectStoreParameters]>} */ ([
        ["cars", { keyPath: "name" }],
        ["vault", { keyPath: "category" }],
        ["consent", { keyPath: "id" }],
        ["disclosures", { autoIncrement: true }],
        ["requests", { keyPath: "id" }],
      ])) {
        if (!db.objectStoreNames.contains(name)) db.createObjectStore(name, options);
      }
    };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error ?? new Error("IndexedDB is not available"));
  });
}

/**
 * @template T
 * @param {string} name @param {"readonly" | "readwrite"} mode
 * @param {(store: IDBObjectStore) => IDBRequest<T>} work
 * @returns {Promise<T>}
 */
async function run(name, mode, work) {
  const db = await openDb();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(name, mode);
    const request = work(tx.objectStore(name));
    tx.oncomplete = () => {
      db.close();
      resolve(request.result);
    };
    tx.onerror = () => reject(tx.error ?? new Error("the store refused the change"));
  });
}

/** @returns {Promise<Car[]>} */
export function cars() {
  return run("cars", "readonly", (s) => /** @type {IDBRequest<Car[]>} */ (s.getAll()));
}

/** @param {Car} car */
export async function save(car) {
  await run("cars", "readwrite", (s) => s.put(car));
}

/** One category of the vault ([] or {} when empty). @param {string} category */
export async function vault(category) {
  const row = await run("vault", "readonly", (s) => s.get(category));
  return row ? row.value : category === "profile" ? {} : [];
}

/** @param {string} category @param {unknown} value */
export async function setVault(category, value) {
  await run("vault", "readwrite", (s) => s.put({ category, value }));
}

/** The rule for one car and category, if the person set one. @param {string} car @param {string} category */
export async function rule(car, category) {
  const row = await run("consent", "readonly", (s) => s.get(`${car}|${category}`));
  return row ? /** @type {"allow" | "ask" | "deny"} */ (row.decision) : null;
}

/** @param {string} car @param {string} category @param {"allow" | "ask" | "deny"} decision */
export async function setRule(car, category, decision) {
  await run("consent", "readwrite", (s) => s.put({ id: `${car}|${category}`, decision }));
}

/** @param {Disclosure} entry */
export async function logDisclosure(entry) {
  await run("disclosures", "readwrite", (s) => s.add(entry));
}

/** @returns {Promise<Disclosure[]>} */
export function disclosures() {
  return run("disclosures", "readonly", (s) => /** @type {IDBRequest<Disclosure[]>} */ (s.getAll()));
}

/** A key this phone asked a friend's car for (kept until a grant names it). @param {KeyRequest} request */
export async function saveRequest(request) {
  await run("requests", "readwrite", (s) => s.put(request));
}

/** @returns {Promise<KeyRequest[]>} */
export function requests() {
  return run("requests", "readonly", (s) => /** @type {IDBRequest<KeyRequest[]>} */ (s.getAll()));
}

/** @param {string} id */
export async function dropRequest(id) {
  await run("requests", "readwrite", (s) => s.delete(id));
}
