// Web Bluetooth to the car's GATT service (docs/ble.md): the byte pipe only; framing is gatt.js,
// shared with every other BLE path. Chrome on Android and desktop; Safari on iOS has no Web
// Bluetooth. ``requestDevice`` needs a user's tap (a button), as browsers require.

import { RX, Reassembler, SERVICE, TX, fragment } from "./gatt.js";
import { Inbox, TransportClosed } from "./transport.js";

/** Data bytes per write: one ATT packet at the MTU of 247 that phones negotiate. */
export const FRAGMENT = 244;

export class BluetoothTransport {
  /**
   * @param {any} device a BluetoothDevice
   * @param {any} rx its RX characteristic @param {any} tx its TX characteristic
   */
  constructor(device, rx, tx) {
    this.device = device;
    this.rx = rx;
    this.reassembler = new Reassembler();
    this.inbox = new Inbox();
    this.sending = Promise.resolve();
    tx.addEventListener("characteristicvaluechanged", (/** @type {any} */ event) => {
      const view = /** @type {DataView} */ (event.target.value);
      let whole;
      try {
        whole = this.reassembler.push(new Uint8Array(view.buffer, view.byteOffset, view.byteLength));
      } catch {
        this.close();
        return;
      }
      if (whole !== null) this.inbox.put(whole);
    });
    device.addEventListener("gattserverdisconnected", () => this.inbox.end());
  }

  /** Ask the person to choose the car, connect, and subscribe (the car then greets). */
  static async connect() {
    const bluetooth = /** @type {any} */ (globalThis.navigator).bluetooth;
    if (!bluetooth) throw new TransportClosed("this browser has no Web Bluetooth (Safari on iOS has none)");
    const device = await bluetooth.requestDevice({ filters: [{ services: [SERVICE] }] });
    const server = await device.gatt.connect();
    const service = await server.getPrimaryService(SERVICE);
    const rx = await service.getCharacteristic(RX);
    const tx = await service.getCharacteristic(TX);
    const transport = new BluetoothTransport(device, rx, tx);
    await tx.startNotifications();
    return transport;
  }

  /** Writes go one after another (with response), so fragments never interleave. @param {Uint8Array} message */
  send(message) {
    if (this.inbox.closed) throw new TransportClosed();
    const pieces = fragment(message, FRAGMENT);
    this.sending = this.sending.then(async () => {
      for (const piece of pieces) await this.rx.writeValueWithResponse(piece);
    });
  }

  /** @param {number} [timeoutMs] @returns {Promise<Uint8Array>} */
  receive(timeoutMs = 10000) {
    return this.inbox.take(timeoutMs, "the car is out of reach");
  }

  close() {
    this.inbox.end();
    if (this.device.gatt.connected) this.device.gatt.disconnect();
  }
}
