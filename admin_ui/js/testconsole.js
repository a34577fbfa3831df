// The test console: method, path, headers and body -> status, headers, body
// and time, through POST /api/test-request (the gateway sends the request to
// its own data plane, so the browser needs no access to the public port).
import { api } from "./api.js";
import { button, field, h, replace, select } from "./dom.js";

const METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/** "Name: value" lines -> {name: value}; throws with the line number on a malformed one. */
export function parseHeaders(text) {
  const headers = {};
  text.split("\n").forEach((raw, index) => {
    const line = raw.trim();
    if (!line) return;
    const colon = line.indexOf(":");
    if (colon <= 0) throw new Error(`Header line ${index + 1} must be "Name: value"`);
    headers[line.slice(0, colon).trim()] = line.slice(colon + 1).trim();
  });
  return headers;
}

/** A path as the data plane gets it: non-ASCII and spaces percent-encoded, "#..." dropped. */
export function encodePath(path) {
  path = path.trim();
  if (!path.startsWith("/")) path = "/" + path;
  const hash = path.indexOf("#");
  if (hash >= 0) path = path.slice(0, hash);
  return path.replace(/[^\x21-\x7e]/gu, (c) => encodeURIComponent(c));
}

export class TestConsole {
  constructor() {
    this.method = select(METHODS, "GET", { "aria-label": "Method", "data-testid": "console-method" });
    this.path = h("input", { type: "text", value: "/", "aria-label": "Path", spellcheck: "false", "data-testid": "console-path" });
    this.headers = h("textarea", { rows: 2, spellcheck: "false", placeholder: "Accept: application/json", "data-testid": "console-headers" });
    this.body = h("textarea", { rows: 3, spellcheck: "false", placeholder: '{"name": "value"}', "data-testid": "console-body" });
    this.output = h("div", { class: "response", "data-testid": "console-response", "aria-live": "polite" });
    this.send = button("Send", () => this.submit(), { class: "btn btn-primary", "data-testid": "console-send" });
    this.root = h("section", { class: "panel", "aria-labelledby": "console-title" },
      h("div", { class: "panel-head" }, h("h2", { id: "console-title" }, "Test console"),
        h("span", { class: "muted small" }, "sends a real request to the data plane")),
      h("div", { class: "console-line" }, field("Method", this.method), field("Path", this.path), this.send),
      h("div", { class: "form-grid" },
        h("div", { class: "wide" }, field("Headers, one per line", this.headers)),
        h("div", { class: "wide" }, field("Body", this.body))),
      this.output);
    for (const control of [this.path, this.headers, this.body]) {
      control.addEventListener("keydown", (event) => {
        if (event.key === "Enter" && (event.ctrlKey || event.metaKey || control === this.path)) {
          event.preventDefault();
          event.stopPropagation();
          this.send.click();
        }
      });
    }
  }

  /** Fill in the endpoint's method and path, and Host for an endpoint on one domain. */
  setDefaults(method, path, host) {
    this.method.value = METHODS.includes(method) ? method : "GET";
    this.path.value = path;
    if (host && host !== "*" && !/^host:/im.test(this.headers.value)) {
      this.headers.value = `Host: ${host}` + (this.headers.value ? "\n" + this.headers.value : "");
    }
  }

  async submit() {
    let headers;
    try {
      headers = parseHeaders(this.headers.value);
    } catch (error) {
      replace(this.output, h("p", { class: "form-error", role: "alert" }, error.message));
      return;
    }
    const payload = { method: this.method.value, path: encodePath(this.path.value), headers, body: this.body.value };
    replace(this.output, h("span", { class: "busy" }, "Sending…"));
    try {
      const answer = await api("POST", "/test-request", payload);
      this.show(answer);
    } catch (error) {
      replace(this.output, h("p", { class: "form-error", role: "alert", "data-testid": "console-error" }, `The request failed: ${error.message}`));
    }
  }

  show(answer) {
    const family = Math.floor(answer.status / 100);
    let body = answer.body;
    let note = null;
    if (answer.body_encoding === "base64") {
      note = `binary body, ${answer.body_bytes} bytes (base64 below)`;
    } else {
      const type = (answer.headers.find(([n]) => n.toLowerCase() === "content-type") || [])[1] || "";
      if (/json/i.test(type) || /^\s*[[{]/.test(body)) {
        try {
          body = JSON.stringify(JSON.parse(body), null, 2);
        } catch {
          // shown as it came
        }
      }
    }
    if (answer.truncated) note = (note ? note + "; " : "") + `only the first ${body.length} characters of ${answer.body_bytes} bytes are shown`;
    const headerList = h("dl", { class: "kv" }, answer.headers.map(([name, value]) => [h("dt", null, name), h("dd", null, value)]));
    replace(this.output,
      h("div", { class: "btn-row" },
        h("span", { class: ["response-status", "status-" + family], "data-testid": "console-status" }, `${answer.status} ${answer.reason}`),
        h("span", { class: "muted", "data-testid": "console-time" }, `${answer.elapsed_ms.toFixed(1)} ms`),
        h("span", { class: "muted small" }, `${answer.body_bytes} bytes`)),
      h("details", null, h("summary", null, `Response headers (${answer.headers.length})`), headerList),
      note ? h("p", { class: "muted small" }, note) : null,
      body ? h("pre", { class: "response-body", "data-testid": "console-body-out" }, body) : h("p", { class: "muted" }, "(empty body)"));
  }
}
