// Formatting helpers shared by the pages: durations, dates, numbers, sizes, and a small DOM
// builder that sets text with textContent, so values from the API are never parsed as HTML.

/** Escapes text for use inside HTML markup or an attribute value. */
export function escapeHtml(text) {
  return String(text)
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;")
    .replaceAll("'", "&#39;");
}

/**
 * Creates an element. `attrs` sets attributes, except `class` (className), `dataset` (an
 * object of data-* values), `text` (textContent) and `on*` functions (event listeners).
 * Children are nodes or strings; null and false children are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = String(value);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** Replaces the children of `node`, skipping null, undefined and false children. */
export function fill(node, ...children) {
  node.replaceChildren(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
  return node;
}

/** Formats an axis tick compactly: `1.2M`, `35K`, `0.25`. */
export function formatTick(value) {
  if (value === null || value === undefined) return "";
  if (Math.abs(value) >= 10_000) return COMPACT.format(value);
  return formatNumber(value);
}

const COMPACT = new Intl.NumberFormat("en-US", { notation: "compact", maximumSignificantDigits: 3 });

/** Formats a length of time in milliseconds: `850 ms`, `12.3 s`, `4 min 05 s`, `2 h 03 min`. */
export function formatDuration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "–";
  if (ms < 0) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) {
    return `${minutes} min ${String(Math.floor(seconds % 60)).padStart(2, "0")} s`;
  }
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${String(minutes % 60).padStart(2, "0")} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

/** Returns the duration of a record with `started_at` and `ended_at`, or null. */
export function durationOf(record, now = Date.now()) {
  if (!record || record.started_at === null || record.started_at === undefined) return null;
  const end = record.ended_at ?? now;
  return end - record.started_at;
}

/** Formats milliseconds since the Unix epoch as local `YYYY-MM-DD HH:MM:SS`. */
export function formatTime(ms) {
  if (ms === null || ms === undefined) return "–";
  const date = new Date(ms);
  if (Number.isNaN(date.getTime())) return "–";
  const pad = (value) => String(value).padStart(2, "0");
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`
  );
}

/** Formats milliseconds since the Unix epoch as an ISO 8601 UTC time, for tooltips. */
export function isoTime(ms) {
  if (ms === null || ms === undefined) return "";
  const date = new Date(ms);
  return Number.isNaN(date.getTime()) ? "" : date.toISOString();
}

/**
 * Converts a metric value from the API to a number. The API sends NaN and the infinities as
 * the strings `NaN`, `Infinity` and `-Infinity`, because JSON numbers cannot express them.
 */
export function metricNumber(value) {
  if (typeof value === "number") return value;
  if (value === "NaN") return NaN;
  if (value === "Infinity") return Infinity;
  if (value === "-Infinity") return -Infinity;
  const parsed = Number(value);
  return Number.isNaN(parsed) ? NaN : parsed;
}

/** Formats a number with up to 6 significant digits, in exponent form when very large or small. */
export function formatNumber(value) {
  const number = metricNumber(value);
  if (Number.isNaN(number)) return "NaN";
  if (number === Infinity) return "∞";
  if (number === -Infinity) return "−∞";
  if (Number.isInteger(number) && Math.abs(number) < 1e15) return number.toLocaleString("en-US");
  const magnitude = Math.abs(number);
  if (magnitude !== 0 && (magnitude < 1e-4 || magnitude >= 1e9)) {
    return number.toExponential(4);
  }
  return String(Number(number.toPrecision(6)));
}

/** Formats a size in bytes: `512 B`, `1.5 KiB`, `20.0 MiB`. */
export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes)) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let size = bytes;
  let unit = 0;
  while (size >= 1024 && unit < units.length - 1) {
    size /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${size} B` : `${size.toFixed(1)} ${units[unit]}`;
}

/** Returns the first 8 characters of an id or digest, for compact display. */
export function shortId(id) {
  return id ? String(id).slice(0, 8) : "–";
}

/** Statuses of runs and steps that will not change any more. */
export const FINAL_STATUSES = new Set([
  "succeeded",
  "failed",
  "cancelled",
  "interrupted",
  "skipped",
  "cached",
]);

/** Returns a status badge: a span whose class names the status. */
export function statusBadge(status) {
  return h("span", { class: `status status-${status}`, text: status });
}
