// QR codes for the sharing links: drawn as SVG built node by node (no markup parsed), and read
// from the camera or a picture, by the browser's BarcodeDetector where it has one (Chrome on
// Android) and by the `qr` library's decoder everywhere else (desktop Chrome on Linux, Firefox).

import encodeQR from "qr";
import decodeQR from "qr/decode.js";

const SVG = "http://www.w3.org/2000/svg";

/**
 * The link as a QR code: one path of dark modules with a quiet zone of four.
 * @param {string} text @param {string} label what the picture is, for screen readers
 * @returns {SVGSVGElement}
 */
export function qrSvg(text, label) {
  const modules = encodeQR(text, "raw", { ecc: "low", border: 4 });
  const size = modules.length;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${size} ${size}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  svg.setAttribute("shape-rendering", "crispEdges");
  const back = document.createElementNS(SVG, "rect");
  back.setAttribute("width", String(size));
  back.setAttribute("height", String(size));
  back.setAttribute("fill", "#fff");
  const dark = document.createElementNS(SVG, "path");
  let d = "";
  modules.forEach((row, y) => {
    row.forEach((on, x) => {
      if (on) d += `M${x} ${y}h1v1h-1z`;
    });
  });
  dark.setAttribute("d", d);
  dark.setAttribute("fill", "#000");
  svg.append(back, dark);
  return svg;
}

/**
 * Show ``text`` as a QR code in ``holder`` (or nothing when text is empty).
 * @param {HTMLElement} holder @param {string} text @param {string} label
 */
export function showQr(holder, text, label) {
  holder.replaceChildren(...(text ? [qrSvg(text, label)] : []));
  holder.hidden = !text;
}

/** @typedef {{ detect(source: ImageBitmapSource): Promise<Array<{ rawValue: string }>> }} Detector */

/** The browser's own QR reader, if it has one. @returns {Detector | null} */
function nativeDetector() {
  const Native = /** @type {any} */ (globalThis).BarcodeDetector;
  if (typeof Native !== "function") return null;
  try {
    return /** @type {Detector} */ (new Native({ formats: ["qr_code"] }));
  } catch {
    return null; // present but without QR support
  }
}

/**
 * The text of the QR code in a picture or a video frame, or null when there is none.
 * @param {HTMLVideoElement | ImageBitmap} source
 * @returns {Promise<string | null>}
 */
export async function readQr(source) {
  const native = nativeDetector();
  if (native) {
    const found = await native.detect(source).catch(() => []);
    if (found[0]) return found[0].rawValue;
  }
  const width = source instanceof HTMLVideoElement ? source.videoWidth : source.width;
  const height = source instanceof HTMLVideoElement ? source.videoHeight : source.height;
  if (!width || !height) return null;
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d", { willReadFrequently: true });
  if (!context) return null;
  context.drawImage(source, 0, 0);
  try {
    return decodeQR({ width, height, data: context.getImageData(0, 0, width, height).data });
  } catch {
    return null; // no code in this frame
  }
}

/** @param {Blob} file @returns {Promise<string | null>} */
export async function readQrFile(file) {
  const bitmap = await createImageBitmap(file);
  try {
    return await readQr(bitmap);
  } finally {
    bitmap.close();
  }
}

/**
 * Read codes from the back camera into ``video`` until one is found or ``signal`` aborts.
 * @param {HTMLVideoElement} video @param {AbortSignal} signal
 * @returns {Promise<string | null>}
 */
export async function scanCamera(video, signal) {
  const stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
  try {
    video.srcObject = stream;
    await video.play();
    while (!signal.aborted) {
      const text = await readQr(video);
      if (text) return text;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    return null;
  } finally {
    for (const track of stream.getTracks()) track.stop();
    video.srcObject = null;
  }
}
