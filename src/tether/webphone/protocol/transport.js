// A WebSocket to the car's ws:// listener (docs/protocol.md §2.1): one binary WebSocket
// message per tether message, whole and in order. The same shape serves Web Bluetooth later.

import { MAX_MESSAGE_SIZE } from "./codec.js";

export class TransportClosed extends Error {
  constructor(message = "the connection is closed") {
    super(message);
    this.code = "closed";
  }
}

export class WsTransport {
  /** @param {WebSocket} socket an open socket */
  constructor(socket) {
    this.socket = socket;
    socket.binaryType = "arraybuffer";
    /** @type {Uint8Array[]} */
    this.inbox = [];
    /** @type {Array<(value: Uint8Array | null) => void>} */
    this.waiting = [];
    this.closed = false;
    socket.addEventListener("message", (event) => {
      const data = event.data instanceof ArrayBuffer ? new Uint8Array(event.data) : null;
      if (data === null || data.length > MAX_MESSAGE_SIZE) {
        socket.close(1003, "binary tether messages only");
        return;
      }
      const next = this.waiting.shift();
      if (next) next(data);
      else this.inbox.push(data);
    });
    socket.addEventListener("close", () => {
      this.closed = true;
      for (const next of this.waiting.splice(0)) next(null);
    });
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
    if (this.closed) throw new TransportClosed();
    this.socket.send(message);
  }

  /** The next message, or TransportClosed. @param {number} [timeoutMs] @returns {Promise<Uint8Array>} */
  async receive(timeoutMs = 10000) {
    const ready = this.inbox.shift();
    if (ready) return ready;
    if (this.closed) throw new TransportClosed();
    const data = await new Promise((resolve) => {
      const timer = setTimeout(() => resolve(null), timeoutMs);
      this.waiting.push((value) => {
        clearTimeout(timer);
        resolve(value);
      });
    });
    if (data === null) throw new TransportClosed(this.closed ? "the car closed the connection" : "no answer in time");
    return /** @type {Uint8Array} */ (data);
  }

  close() {
    this.closed = true;
    this.socket.close();
  }
}
