// The GATT framing of docs/protocol.md §2.1, shared by every BLE byte pipe (Web Bluetooth in the
// app, tests without a radio): a message cut into fragments, each behind one header byte, 0x01 on
// the last fragment and 0x00 before it; reassembly bounded by the protocol's message limit.

import { MAX_MESSAGE_SIZE } from "./codec.js";

export const SERVICE = "6b7a0001-3c1f-4d8a-9b1e-6e5f7a2b9c01";
export const RX = "6b7a0002-3c1f-4d8a-9b1e-6e5f7a2b9c01"; // the phone writes (with response)
export const TX = "6b7a0003-3c1f-4d8a-9b1e-6e5f7a2b9c01"; // the car notifies

/**
 * ``message`` as fragments of at most ``size`` bytes each, header included.
 * @param {Uint8Array} message @param {number} size @returns {Uint8Array[]}
 */
export function fragment(message, size) {
  if (message.length === 0 || message.length > MAX_MESSAGE_SIZE) {
    throw new RangeError("a message is 1 to 65,536 bytes");
  }
  const room = Math.max(1, size - 1);
  const out = [];
  for (let start = 0; start < message.length; start += room) {
    const part = message.subarray(start, start + room);
    const piece = new Uint8Array(part.length + 1);
    piece[0] = start + room >= message.length ? 1 : 0;
    piece.set(part, 1);
    out.push(piece);
  }
  return out;
}

/** Puts fragments back together; a message over the limit is refused, not buffered. */
export class Reassembler {
  constructor() {
    /** @type {Uint8Array[]} */
    this.parts = [];
    this.size = 0;
  }

  /**
   * One fragment in; the whole message when this was its last fragment, else null.
   * @param {Uint8Array} value @returns {Uint8Array | null}
   */
  push(value) {
    if (value.length === 0) return null;
    const body = value.subarray(1);
    this.size += body.length;
    if (this.size > MAX_MESSAGE_SIZE) {
      this.parts = [];
      this.size = 0;
      throw new RangeError("a message over 65,536 bytes was refused");
    }
    this.parts.push(body.slice());
    if (value[0] !== 1) return null;
    const whole = new Uint8Array(this.size);
    let offset = 0;
    for (const part of this.parts) {
      whole.set(part, offset);
      offset += part.length;
    }
    this.parts = [];
    this.size = 0;
    return whole;
  }
}
