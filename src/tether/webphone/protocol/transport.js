// A WebSocket to the car's ws:// listener (docs/protocol.md §2.1): one binary WebSocket
// message per tether message, whole and in order. Its Inbox serves Web Bluetooth too.

import { MAX_MESSAGE_SIZE } from "./codec.js";

export class TransportClosed extends Error {
  constructor(message = "the connection is closed") {
    super(message);
    this.code = "closed";
  }
}

/**
 * Whole messages as they arrive, handed to whoever waits for one: the part every byte pipe
 * (WebSocket, Web Bluetooth) shares.
 */
export class Inbox {
  constructor() {
    /** @type {Uint8Array[]} */
    this.queue = [];
    /** @type {Array<(value: Uint8Array | null) => void>} */
    this.waiting = [];
    this.closed = false;
  }

  /** A message arrived. @param {Uint8Array} message */
  put(message) {
    const next = this.waiting.shift();
    if (next) next(message);
    else this.queue.push(message);
  }

  /** The pipe ended: whoever waits hears it at once. */
  end() {
    this.closed = true;
    for (const next of this.waiting.splice(0)) next(null);
  }

  /**
   * The next message, or TransportClosed (``gone`` says why, when the pipe ended).
   * @param {number} timeoutMs @param {string} gone @returns {Promise<Uint8Array>}
   */
  async take(timeoutMs, gone) {
    const ready = this.queue.shift();
    if (ready) return ready;
    if (this.closed) throw new TransportClosed();
    const data = await new Promise((resolve) => {
      const timer = setTimeout(() => resolve(null), timeoutMs);
      this.waiting.push((value) => {
        clearTimeout(timer);
        resolve(value);
      });
    });
    if (data === null) throw new TransportClosed(this.closed ? gone : "no answer in time");
    return /** @type {Uint8Array} */ (data);
  }
}

export class WsTransport {
  /** @param {WebSocket} socket an open socket */
  constructor(socket) {
    this.socket = socket;
    socket.binaryType = "arraybuffer";
    this.inbox = new Inbox();
    socket.addEventListener("message", (event) => {
      const data = event.data instanceof ArrayBuffer ? new Uint8Array(event.data) : null;
      if (data === null || data.length > MAX_MESSAGE_SIZE) {
        socket.close(1003, "binary tether messages only");
        return;
      }
      this.inbox.put(data);
    });
    socket.addEventListener("close", () => this.inbox.end());
  }

  /** Open ``url`` (ws:// or wss://). @param {string} url @param {number} [timeoutMs] */
  static async connect(url, timeoutMs = 5000) {
    const socket = new WebSocket(url);
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new TransportClosed(`cannot reach ${url}`)), timeoutMs);
      socket.addEventListener("open", () => {
        clearTimeout(timer);
        resolve(undefined);
      });
      socket.addEventListener("error", () => {
        clearTimeout(timer);
        reject(new TransportClosed(`cannot reach ${url}`));
      });
    });
    return new WsTransport(socket);
  }

  /** @param {Uint8Array} message */
  send(message) {
    if (this.inbox.closed) throw new TransportClosed();
    this.socket.send(message);
  }

  /** The next message, or TransportClosed. @param {number} [timeoutMs] @returns {Promise<Uint8Array>} */
  receive(timeoutMs = 10000) {
    return this.inbox.take(timeoutMs, "the car closed the connection");
  }

  close() {
    this.inbox.end();
    this.socket.close();
  }
}
