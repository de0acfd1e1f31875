// The phone's role of docs/protocol.md, sans-IO: owner pairing (§5), standard and fast
// transactions (§6) and the session's records (§7, §8). Each machine takes whole messages in
// ``receive`` and queues whole messages for ``dataToSend``; transports, storage and the clock
// belong to the caller. Randomness comes from WebCrypto's CSPRNG.

import { decode, encode, rfc8949EncodeOptions } from "cborg";

import { ascii, concat, equal, fromBigInt, toBigInt } from "./bytes.js";
import { ProtocolError, decodeMessage, encodeMessage, field } from "./codec.js";
import * as crypto from "./crypto.js";
import { ORDER, Prover, passwordInput, splitW } from "./spake2plus.js";

const ZERO = new Uint8Array(12);
const IDS = { context: ascii("tether/2 pairing"), prover: ascii("tether/2 phone"), verifier: ascii("tether/2 vehicle") };
const T = {
  PairRequest: 10, PairChallenge: 11, PairConfirm: 12, PairAccept: 13, PhoneEnrollment: 20,
  StandardHello: 30, VehicleAuth: 31, PhoneAuth: 32, Finished: 33, FastProof: 36,
  VehicleHello: 37, Fallback: 38, Record: 50, Error: 60, CommandRequest: 70, CommandResult: 71,
  Close: 72, RevocationRequest: 73, RevocationResult: 74, DataRequest: 75, DataResponse: 76, RangingRequest: 77, RangingReady: 78,
};

/** A refusal the car sent (its code is read, its text never trusted as markup). */
export class PeerError extends Error {
  /** @param {string} code @param {string} message */
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/** @param {import("./codec.js").Message} msg */
function peerError(msg) {
  const code = String(field(msg, 1));
  return new PeerError(/^[a-z_]{1,64}$/.test(code) ? code : "unknown", String(field(msg, 2)));
}

/** A scalar in [1, order) from 40 random bytes (FIPS 186-5 A.2.1, as the Python core). */
function randomScalar() {
  return (toBigInt(crypto.randomBytes(40)) % (ORDER - 1n)) + 1n;
}

/** ``w0``, ``w1`` from a pairing code (§5). @param {string} code */
export async function codeSecret(code) {
  if (!/^[0-9]{8,}$/.test(code)) {
    throw new ProtocolError("invalid_code", "a pairing code is at least 8 digits");
  }
  const material = await crypto.pbkdf2(passwordInput(ascii(code), IDS), ascii("tether/2 pairing code"), 20000, 80);
  return splitW(material);
}

/** Shared by the machines: an outbox and the Error check. */
class Machine {
  constructor() {
    /** @type {Uint8Array[]} */
    this.outbox = [];
    this.failed = false;
  }

  /** @returns {Uint8Array[]} */
  dataToSend() {
    const out = this.outbox;
    this.outbox = [];
    return out;
  }

  /** @param {Uint8Array} data @param {number[]} expected */
  parse(data, expected) {
    if (this.failed) throw new ProtocolError("unexpected_message", "the exchange is over");
    const msg = decodeMessage(data);
    if (msg.type === T.Error) {
      this.failed = true;
      throw peerError(msg);
    }
    if (!expected.includes(msg.type)) {
      this.failed = true;
      this.outbox.push(encodeMessage(T.Error, new Map([[1, "unexpected_message"], [2, `${msg.name} now`]])));
      throw new ProtocolError("unexpected_message", `${msg.name} was not expected now`);
    }
    return msg;
  }
}

/**
 * Owner pairing with a code, as the Prover. ``receive`` resolves to the car's identity once done.
 */
export class PhonePairing extends Machine {
  /**
   * @param {{ w0: bigint, w1: bigint }} secret from :func:`codeSecret`
   * @param {{ privateKey: CryptoKey, publicKey: Uint8Array }} endpoint this car's key, made for it
   * @param {string} name what the car will call this phone
   */
  constructor(secret, endpoint, name) {
    super();
    this.prover = new Prover(secret.w0, secret.w1, IDS, randomScalar());
    this.endpoint = endpoint;
    this.name = name;
    /** @type {Uint8Array} */
    this.greeting = new Uint8Array();
    /** @type {{ th: Uint8Array, sealP: Uint8Array, sealV: Uint8Array, confirmV: Uint8Array } | null} */
    this.keys = null;
    this.state = "await_greeting";
  }

  /**
   * @param {Uint8Array} data
   * @returns {Promise<{ vehicleKey: Uint8Array, vehicleName: string } | null>}
   */
  async receive(data) {
    const want = { await_greeting: [T.VehicleHello], sent_request: [T.PairChallenge], sent_confirm: [T.PairAccept] };
    const msg = this.parse(data, want[/** @type {keyof typeof want} */ (this.state)] ?? []);
    if (msg.type === T.VehicleHello) {
      this.greeting = field(msg, 1);
      this.outbox.push(encodeMessage(T.PairRequest, new Map([[1, this.prover.share]])));
      this.state = "sent_request";
      return null;
    }
    if (msg.type === T.PairChallenge) {
      const shareV = /** @type {Uint8Array} */ (field(msg, 1));
      const outcome = await this.prover.finish(shareV);
      const th = await crypto.sha256(concat(ascii("tether/2 pairing transcript"), this.greeting, this.prover.share, shareV));
      const seal = await crypto.hkdf(outcome.sharedKey, th, ascii("tether/2 pairing keys"), 64);
      this.keys = { th, sealP: seal.slice(0, 32), sealV: seal.slice(32), confirmV: outcome.confirmV };
      const signature = await crypto.sign(this.endpoint.privateKey, concat(ascii("tether/2 pairing phone"), th));
      const enrollment = encodeMessage(
        T.PhoneEnrollment,
        new Map(/** @type {Array<[number, unknown]>} */ ([[1, this.endpoint.publicKey], [2, this.name], [3, signature]])),
      );
      const sealed = await crypto.seal(this.keys.sealP, ZERO, enrollment, th);
      this.outbox.push(encodeMessage(T.PairConfirm, new Map([[1, outcome.confirmP], [2, sealed]])));
      this.state = "sent_confirm";
      return null;
    }
    const keys = /** @type {NonNullable<typeof this.keys>} */ (this.keys);
    if (!equal(field(msg, 1), keys.confirmV)) {
      this.failed = true;
      throw new ProtocolError("bad_confirmation", "the car did not confirm the code");
    }
    const identity = decodeMessage(await crypto.open(keys.sealV, ZERO, field(msg, 2), keys.th));
    if (identity.name !== "VehicleIdentity") throw new ProtocolError("malformed", "not a VehicleIdentity");
    const vehicleKey = /** @type {Uint8Array} */ (field(identity, 1));
    const signed = concat(ascii("tether/2 pairing vehicle"), keys.th, this.endpoint.publicKey);
    if (!(await crypto.verify(vehicleKey, field(identity, 3), signed))) {
      throw new ProtocolError("bad_signature", "the car's identity is not signed by its key");
    }
    this.state = "done";
    return { vehicleKey, vehicleName: String(field(identity, 2)) };
  }
}

/** The channel's keys for one session, from the phone's side (§6.1). @param {Uint8Array} okm */
function sessionKeys(okm) {
  return {
    send: okm.slice(0, 32),
    recv: okm.slice(32, 64),
    sendIv: okm.slice(64, 76),
    recvIv: okm.slice(76, 88),
    persistent: okm.slice(88, 120),
    finished: okm.slice(120, 152),
  };
}

/** @param {Uint8Array} iv @param {number} counter @returns {Uint8Array} */
function recordNonce(iv, counter) {
  return fromBigInt(toBigInt(iv) ^ BigInt(counter), 12);
}

/**
 * What answers the car's data requests (§8.2): by consent, from the vault.
 * @typedef {(items: Array<{ category: string, query: any }>, purpose: string) =>
 *   Promise<{ granted: Record<string, unknown>, denied: string[] }>} DataAnswer
 */

/** Deny everything: a phone with no vault answers so (never an error). @type {DataAnswer} */
export const denyAll = async (items) => ({ granted: {}, denied: items.map((i) => i.category) });

/** @param {Uint8Array} data @returns {Array<{ category: string, query: any }>} */
function dataItems(data) {
  /** @type {unknown} */
  let items;
  try {
    items = decode(data, { strict: true, rejectDuplicateMapKeys: true });
  } catch {
    throw new ProtocolError("malformed", "data request items are not valid CBOR");
  }
  const ok =
    Array.isArray(items) &&
    items.length >= 1 &&
    items.length <= 5 &&
    items.every((i) => i && typeof i === "object" && typeof i.category === "string");
  if (!ok) throw new ProtocolError("malformed", "data request items are [{category, query}]");
  return /** @type {Array<{ category: string, query: any }>} */ (items);
}

/** An open session: commands out, results in, records counted in each direction (§7). */
export class PhoneSession extends Machine {
  /** @param {ReturnType<typeof sessionKeys>} keys @param {boolean} fast @param {DataAnswer} [answerData] */
  constructor(keys, fast, answerData = denyAll) {
    super();
    this.keys = keys;
    this.fast = fast;
    this.answerData = answerData;
    this.sent = 0;
    this.received = 0;
    this.nextId = 1;
  }

  /** @param {number} type @param {Map<number, unknown>} fields */
  async send(type, fields) {
    const plain = encodeMessage(type, fields);
    const ciphertext = await crypto.seal(this.keys.send, recordNonce(this.keys.sendIv, this.sent), plain, ascii("tether/2 record"));
    this.sent += 1;
    this.outbox.push(encodeMessage(T.Record, new Map([[1, ciphertext]])));
  }

  /** Queue a command; its request id. @param {string} command */
  async request(command) {
    const id = this.nextId;
    this.nextId += 1;
    await this.send(T.CommandRequest, new Map(/** @type {Array<[number, unknown]>} */ ([[1, id], [2, command]])));
    return id;
  }

  async close() {
    await this.send(T.Close, new Map());
  }

  /** Hand an owner-signed revocation to the car (§9.3); its request id. @param {Uint8Array} revocation */
  async deliverRevocation(revocation) {
    const id = this.nextId;
    this.nextId += 1;
    await this.send(T.RevocationRequest, new Map(/** @type {Array<[number, unknown]>} */ ([[1, id], [2, revocation]])));
    return id;
  }

  /**
   * One record from the car: a result, a question (answered here: ranging setup at once, data
   * requests denied unless ``answerData`` says otherwise), or the car's Close.
   * @param {Uint8Array} data
   * @returns {Promise<{ kind: "result" | "revocation", requestId: number, ok: boolean, reason: string, message: string } | { kind: "closed" } | null>}
   */
  async receive(data) {
    const record = this.parse(data, [T.Record]);
    let plain;
    try {
      plain = await crypto.open(this.keys.recv, recordNonce(this.keys.recvIv, this.received), field(record, 1), ascii("tether/2 record"));
    } catch {
      this.failed = true;
      throw new ProtocolError("bad_record", "record replayed, reordered or modified");
    }
    this.received += 1;
    const msg = decodeMessage(plain);
    if (msg.type === T.CommandResult) {
      return {
        kind: "result",
        requestId: Number(field(msg, 1)),
        ok: field(msg, 2) === true,
        reason: String(field(msg, 3) ?? ""),
        message: String(field(msg, 4)),
      };
    }
    if (msg.type === T.RevocationResult) {
      return {
        kind: "revocation",
        requestId: Number(field(msg, 1)),
        ok: field(msg, 2) === true,
        reason: String(field(msg, 4) ?? ""),
        message: String(field(msg, 5)),
      };
    }
    if (msg.type === T.Close) return { kind: "closed" };
    if (msg.type === T.RangingRequest) {
      await this.send(T.RangingReady, new Map([[1, Number(field(msg, 1))], [2, 250000]]));
    } else if (msg.type === T.DataRequest) {
      const items = dataItems(field(msg, 2));
      const { granted, denied } = await this.answerData(items, String(field(msg, 3)));
      const fields = /** @type {Array<[number, unknown]>} */ ([
        [1, Number(field(msg, 1))],
        [2, encode(granted, rfc8949EncodeOptions)],
        [3, encode(denied, rfc8949EncodeOptions)],
      ]);
      await this.send(T.DataResponse, new Map(fields));
    } else {
      throw new ProtocolError("malformed", `a car may not send ${msg.name} in a session`);
    }
    return null;
  }
}

/**
 * One transaction with a paired car: fast when ``persistent`` is given (one round trip), else
 * standard; ``early`` commands ride right behind the proof. ``receive`` resolves to the open
 * session and the new persistent key once the car's Finished checks out.
 */
export class PhoneTransaction extends Machine {
  /**
   * @param {{ endpoint: { privateKey: CryptoKey, publicKey: Uint8Array }, vehicleKey: Uint8Array,
   *   persistent: Uint8Array | null, early: string[], credential?: Uint8Array,
   *   answerData?: DataAnswer }} options
   */
  constructor(options) {
    super();
    this.options = options;
    this.state = "await_greeting";
    /** @type {Uint8Array} */
    this.greeting = new Uint8Array();
    /** @type {{ privateKey: CryptoKey, publicKey: Uint8Array } | null} */
    this.eph = null;
    /** @type {Uint8Array} */
    this.nonce = new Uint8Array();
    /** @type {Uint8Array} */
    this.transcript = new Uint8Array();
    /** @type {PhoneSession | null} */
    this.session = null;
  }

  async standardHello() {
    this.eph = await crypto.generateKey("ECDH");
    this.nonce = crypto.randomBytes(16);
    this.outbox.push(encodeMessage(T.StandardHello, new Map([[1, this.eph.publicKey], [2, this.nonce]])));
    this.state = "sent_standard_hello";
  }

  /** @param {ReturnType<typeof sessionKeys>} keys @param {boolean} fast */
  async openSession(keys, fast) {
    this.session = new PhoneSession(keys, fast, this.options.answerData);
    for (const command of this.options.early) await this.session.request(command);
    this.outbox.push(...this.session.dataToSend());
  }

  /**
   * @param {Uint8Array} data
   * @returns {Promise<{ session: PhoneSession, persistent: Uint8Array } | null>}
   */
  async receive(data) {
    const want = {
      await_greeting: [T.VehicleHello],
      sent_standard_hello: [T.VehicleAuth],
      sent_phone_auth: [T.Finished],
      sent_fast_proof: [T.Finished, T.Fallback],
    };
    const msg = this.parse(data, want[/** @type {keyof typeof want} */ (this.state)] ?? []);
    const vehicleId = await crypto.keyId(this.options.vehicleKey);
    if (msg.type === T.VehicleHello) {
      this.greeting = field(msg, 1);
      const persistent = this.options.persistent;
      if (persistent === null) {
        await this.standardHello();
        return null;
      }
      this.nonce = crypto.randomBytes(16);
      const th = await crypto.sha256(concat(ascii("tether/2 fast"), this.greeting, this.nonce, vehicleId));
      const cryptogram = await crypto.hmac(persistent, concat(ascii("tether/2 fast-phone"), th));
      this.outbox.push(encodeMessage(T.FastProof, new Map([[1, this.nonce], [2, cryptogram]])));
      this.transcript = concat(th, cryptogram);
      await this.openSession(sessionKeys(await crypto.hkdf(persistent, th, ascii("tether/2 fast session"), 152)), true);
      this.state = "sent_fast_proof";
      return null;
    }
    if (msg.type === T.Fallback) {
      await this.standardHello();
      return null;
    }
    if (msg.type === T.VehicleAuth) {
      const eph = /** @type {NonNullable<typeof this.eph>} */ (this.eph);
      const ephV = /** @type {Uint8Array} */ (field(msg, 1));
      const th1 = await crypto.sha256(
        concat(ascii("tether/2 standard"), this.greeting, eph.publicKey, this.nonce, ephV, field(msg, 2), vehicleId),
      );
      const okm = await crypto.hkdf(await crypto.ecdh(eph.privateKey, ephV), th1, ascii("tether/2 standard keys"), 216);
      const sealedV = /** @type {Uint8Array} */ (field(msg, 3));
      const sigV = await crypto.open(okm.slice(0, 32), ZERO, sealedV, th1);
      if (!(await crypto.verify(this.options.vehicleKey, sigV, concat(ascii("tether/2 vehicle-auth"), th1)))) {
        this.failed = true;
        throw new ProtocolError("bad_signature", "this is not the car this phone paired with");
      }
      const endpointId = await crypto.keyId(this.options.endpoint.publicKey);
      const sigP = await crypto.sign(this.options.endpoint.privateKey, concat(ascii("tether/2 phone-auth"), th1, endpointId));
      const proof = concat(endpointId, sigP, this.options.credential ?? new Uint8Array());
      const sealedP = await crypto.seal(okm.slice(32, 64), ZERO, proof, th1);
      this.outbox.push(encodeMessage(T.PhoneAuth, new Map([[1, sealedP]])));
      this.transcript = await crypto.sha256(concat(th1, sealedV, sealedP));
      await this.openSession(sessionKeys(okm.slice(64)), false);
      this.state = "sent_phone_auth";
      return null;
    }
    const session = /** @type {PhoneSession} */ (this.session);
    if (!equal(field(msg, 1), await crypto.hmac(session.keys.finished, this.transcript))) {
      this.failed = true;
      throw new ProtocolError("bad_finished", "the car's Finished does not match");
    }
    this.state = "established";
    return { session, persistent: session.keys.persistent };
  }
}
