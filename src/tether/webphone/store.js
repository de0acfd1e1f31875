// The phone's keys in IndexedDB: one record per car. CryptoKey objects are stored as they are,
// so a non-extractable endpoint key stays non-extractable; nothing else holds it.

const DB = "tether-phone";
const CARS = "cars";

/**
 * @typedef {{ name: string, address: string, vehicleKey: Uint8Array,
 *   endpoint: { privateKey: CryptoKey, publicKey: Uint8Array },
 *   persistent: Uint8Array | null, pairedAt: number }} Car
 */

/** @returns {Promise<IDBDatabase>} */
function openDb() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(CARS, { keyPath: "name" });
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error ?? new Error("IndexedDB is not available"));
  });
}

/**
 * @template T
 * @param {"readonly" | "readwrite"} mode
 * @param {(store: IDBObjectStore) => IDBRequest<T>} work
 * @returns {Promise<T>}
 */
async function run(mode, work) {
  const db = await openDb();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(CARS, mode);
    const request = work(tx.objectStore(CARS));
    tx.oncomplete = () => {
      db.close();
      resolve(request.result);
    };
    tx.onerror = () => reject(tx.error ?? new Error("the key store refused the change"));
  });
}

/** @returns {Promise<Car[]>} */
export function cars() {
  return run("readonly", (store) => /** @type {IDBRequest<Car[]>} */ (store.getAll()));
}

/** @param {Car} car */
export async function save(car) {
  await run("readwrite", (store) => store.put(car));
}
