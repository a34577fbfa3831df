// Building the page from data, safely: every string becomes a text node or a
// property, never markup parsed from a string, anywhere in the UI.

const PROPERTIES = new Set(["value", "checked", "selected", "disabled", "readOnly", "multiple", "indeterminate"]);

/** An element: h("a", {href: "#/x", class: "link", onclick: fn}, "text", child, [more]) */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";

/** An SVG element, as h. */
export function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  if (!attrs) return;
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") {
      el.setAttribute("class", Array.isArray(value) ? value.filter(Boolean).join(" ") : value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (PROPERTIES.has(key)) {
      el[key] = value;
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
}

/** Append children: nodes as they are, anything else as text. */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replace all children of el. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A <label class="field"> with a caption above its control. */
export function field(caption, control, hint) {
  return h("label", { class: "field" }, h("span", null, caption), control, hint ? h("span", { class: "field-hint" }, hint) : null);
}

/** A <select> of [value, label] pairs (or plain values). */
export function select(options, value, attrs) {
  const el = h("select", attrs);
  for (const option of options) {
    const [v, label] = Array.isArray(option) ? option : [option, option];
    const o = h("option", { value: v }, label);
    if (v === value) o.selected = true;
    el.append(o);
  }
  if (value !== undefined && value !== null) el.value = value;
  return el;
}

const STATUSES = new Set(["created", "compiled", "running", "stopped", "error"]);

/** The status badge of an endpoint. */
export function badge(status) {
  const known = STATUSES.has(status);
  return h("span", { class: ["badge", known ? "badge-" + status : "badge-plain"], dataset: { status: String(status) } }, String(status));
}

export function methodBadge(method) {
  return h("span", { class: "badge badge-method" }, String(method));
}

/** A table: columns are [heading, className?]; rows are arrays of cells (nodes or text). */
export function table(columns, rows, attrs) {
  const head = h("tr", null, columns.map(([text, cls]) => h("th", { class: cls, scope: "col" }, text)));
  const body = h("tbody", null, rows.map((cells) => row(columns, cells)));
  return h("div", { class: "table-wrap" }, h("table", attrs, h("thead", null, head), body));
}

export function row(columns, cells, attrs) {
  return h("tr", attrs, cells.map((cell, i) => h("td", { class: columns[i] && columns[i][1] }, cell)));
}

/** A button; onclick may be async: the button is disabled while it runs. */
export function button(text, onclick, attrs = {}) {
  const el = h("button", Object.assign({ type: "button", class: "btn" }, attrs), text);
  if (onclick) {
    el.addEventListener("click", async (event) => {
      if (el.dataset.running) return;
      el.dataset.running = "1";
      el.disabled = true;
      try {
        await onclick(event);
      } finally {
        delete el.dataset.running;
        el.disabled = el.dataset.off === "1";
      }
    });
  }
  return el;
}

/** Enable or disable a button of button(): kept so while its own click is running. */
export function setEnabled(el, enabled) {
  el.dataset.off = enabled ? "" : "1";
  if (!el.dataset.running) el.disabled = !enabled;
}

/** "2026-11-27 10:02:03" in local time; "" for nothing. */
export function formatTime(value) {
  if (value === null || value === undefined || value === "") return "";
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

/** "10:02:03.123" of epoch seconds. */
export function formatClock(seconds) {
  const date = new Date(seconds * 1000);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

export function ago(value) {
  if (!value) return "never";
  const seconds = (Date.now() - new Date(value).getTime()) / 1000;
  if (!Number.isFinite(seconds)) return String(value);
  if (seconds < 60) return "just now";
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

export function formatNumber(value, digits = 0) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return Number(value).toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

export function formatMs(value) {
  if (value === null || value === undefined) return "–";
  if (value >= 1000) return `${(value / 1000).toFixed(2)} s`;
  if (value >= 10) return `${value.toFixed(0)} ms`;
  return `${value.toFixed(2)} ms`;
}

export function formatDuration(seconds) {
  seconds = Math.max(0, Math.floor(seconds));
  const d = Math.floor(seconds / 86400), hh = Math.floor((seconds % 86400) / 3600);
  const mm = Math.floor((seconds % 3600) / 60), ss = seconds % 60;
  if (d) return `${d}d ${hh}h`;
  if (hh) return `${hh}h ${mm}m`;
  if (mm) return `${mm}m ${ss}s`;
  return `${ss}s`;
}

/** Ids of records are used in URLs: only what the API makes (hex, uuid, word characters). */
export function safeId(id) {
  return /^[A-Za-z0-9_-]{1,100}$/.test(String(id)) ? String(id) : encodeURIComponent(String(id));
}
