// Traffic policies (docs/policies.md) in the UI: a record's own policy edited
// as JSON text, the API's 400 shown at the field it names (its line marked and
// selected in the text); an endpoint's effective policy part by part with the
// record each part came from; a traffic split's versions with their counts.
// The API validates; the UI only parses the JSON and shows what the API says.
import { formatNumber, h, table } from "./dom.js";

const PARTS_HINT = {
  endpoint: "parts: cors, ip, auth, rate_limit, limits, traffic_split; a part left out or null is the collection's, then the domain's",
  collection: "parts: cors, ip, auth, rate_limit, limits; a part left out or null is the domain's; the collection's endpoints inherit it",
  domain: "parts: cors, ip, auth, rate_limit, limits; the endpoints on the domain inherit it",
};

/** The text of a policy: "" for none (an empty object), else indented JSON. */
function textOf(policy) {
  return policy && typeof policy === "object" && Object.keys(policy).length ? JSON.stringify(policy, null, 2) : "";
}

/**
 * A policy as JSON text in a form. value() is the policy (throws an Error
 * saying where the JSON is broken); showProblem(apiError) shows a 400 about a
 * policy field at that field and answers true, or false when it is about
 * something else.
 */
export class PolicyEditor {
  constructor(level, onChange = null) {
    this.saved = "";
    this.input = h("textarea", {
      class: "policy-input", rows: 8, spellcheck: "false", autocapitalize: "off", autocomplete: "off",
      placeholder: '{"cors": {"allow_origins": ["https://app.example.com"]}}',
      "aria-label": `Policy of the ${level} (JSON)`, "data-testid": "policy-input",
    });
    this.problem = h("p", { class: "form-error", role: "alert", hidden: true, "data-testid": "policy-error" });
    this.input.addEventListener("input", () => {
      this.clearProblem();
      if (onChange) onChange();
    });
    this.root = h("div", { class: "field wide policy-editor" },
      h("span", null, "Policy (JSON)"), this.input,
      h("span", { class: "field-hint" }, PARTS_HINT[level]), this.problem);
  }

  /** Show a record's policy (secrets as the API masks them: saved back as they are, they are kept). */
  set(policy) {
    this.saved = textOf(policy);
    this.input.value = this.saved;
    this.clearProblem();
  }

  dirty() {
    return this.input.value.trim() !== this.saved.trim();
  }

  /** The policy object of the text ({} when empty). */
  value() {
    const text = this.input.value.trim();
    if (!text) return {};
    let policy;
    try {
      policy = JSON.parse(text);
    } catch (error) {
      throw this.fail(`The policy is not JSON: ${error.message}`);
    }
    if (policy === null || typeof policy !== "object" || Array.isArray(policy)) {
      throw this.fail("The policy must be a JSON object of parts, such as {\"cors\": {...}}.");
    }
    return policy;
  }

  fail(message) {
    this.problem.textContent = message;
    this.problem.hidden = false;
    this.input.setAttribute("aria-invalid", "true");
    return new Error(message);
  }

  clearProblem() {
    this.problem.hidden = true;
    this.problem.textContent = "";
    this.input.removeAttribute("aria-invalid");
    delete this.problem.dataset.line;
  }

  /** A 400 naming policy.<part>...: said under the text, its line selected. */
  showProblem(error) {
    const name = policyField(error);
    if (name === null) return false;
    const text = this.input.value;
    const at = locate(text, segments(name));
    const line = at === null ? null : text.slice(0, at).split("\n").length;
    this.fail(line === null ? error.message : `Line ${line}: ${error.message}`);
    if (line !== null) {
      this.problem.dataset.line = String(line);
      const end = text.indexOf("\n", at);
      this.input.focus();
      this.input.setSelectionRange(at, end < 0 ? text.length : end);
    }
    return true;
  }
}

/** The field a 400 is about when it is a policy's ("policy.cors.allow_origins[0]"), else null. */
function policyField(error) {
  if (!error || error.status !== 400) return null;
  const named = error.body && typeof error.body.field === "string" ? error.body.field : String(error.message).split(":")[0];
  return named === "policy" || named.startsWith("policy.") || named.startsWith("policy[") ? named : null;
}

/** "policy.cors.allow_origins[0]" -> ["cors", "allow_origins", 0]. */
function segments(name) {
  const out = [];
  for (const m of name.replace(/^policy\.?/, "").matchAll(/\[(\d+)\]|([^.[\]]+)/g)) out.push(m[1] !== undefined ? Number(m[1]) : m[2]);
  return out;
}

/**
 * Where in JSON text the value at a path is (a member: its name), or the
 * nearest enclosing value found; null for text that is not JSON. A scan of
 * text JSON.parse accepted, recording each value's offset by its path.
 */
function locate(text, path) {
  try {
    JSON.parse(text);
  } catch {
    return null;
  }
  const found = new Map();
  let i = 0;
  const space = () => {
    while (i < text.length && " \t\n\r".includes(text[i])) i++;
  };
  const string = () => {
    const start = i++;
    while (i < text.length && text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i));
  };
  const value = (at) => {
    space();
    if (!found.has(JSON.stringify(at))) found.set(JSON.stringify(at), i);
    const c = text[i];
    if (c === "{" || c === "[") {
      const close = c === "{" ? "}" : "]";
      i++;
      space();
      for (let n = 0; i < text.length && text[i] !== close; n++) {
        if (c === "{") {
          space();
          const keyAt = i;
          const key = string();
          found.set(JSON.stringify([...at, key]), keyAt); // a member: at its name
          space();
          i++; // ':'
          value([...at, key]);
        } else {
          value([...at, n]);
        }
        space();
        if (text[i] === ",") i++;
        space();
      }
      i++;
    } else if (c === '"') {
      string();
    } else {
      while (i < text.length && !",}] \t\n\r".includes(text[i])) i++;
    }
  };
  value([]);
  for (let n = path.length; n >= 0; n--) {
    const key = JSON.stringify(path.slice(0, n));
    if (found.has(key)) return found.get(key);
  }
  return null;
}

const LEVEL_WORDS = { endpoint: "this endpoint", collection: "its collection", domain: "its domain" };

/**
 * An endpoint's effective policy: each part, where it came from (the
 * endpoint, its collection or its domain, by name) and its setting as the API
 * shows it (secrets masked). names: {collection, domain} of the record.
 */
export function effectiveView(record, names = {}) {
  const effective = record.effective_policy;
  if (!effective || typeof effective !== "object") {
    return h("p", { class: "muted", "data-testid": "effective-policy" }, "This gateway does not report effective policies.");
  }
  const sources = record.policy_sources || {};
  const parts = Object.keys(effective);
  if (!parts.length) {
    return h("p", { class: "empty", "data-testid": "effective-policy" },
      "No policy applies: none is set on this endpoint, its collection or its domain.");
  }
  const rows = parts.map((part) => {
    const level = sources[part] || "endpoint";
    const name = names[level];
    return [
      h("code", null, part),
      h("span", { dataset: { source: level } }, LEVEL_WORDS[level] || level, name ? h("span", { class: "muted" }, ` (${name})`) : null),
      h("pre", { class: "policy-part" }, JSON.stringify(effective[part], null, 2)),
    ];
  });
  return table([["Part"], ["From"], ["Setting"]], rows, { "data-testid": "effective-policy" });
}

/** A traffic split's versions: weight and requests served each (GET endpoint's `traffic`). */
export function trafficView(record) {
  const traffic = Array.isArray(record.traffic) ? record.traffic : [];
  if (!traffic.length) return null;
  const total = traffic.reduce((sum, t) => sum + (Number(t.served) || 0), 0);
  const rows = traffic.map((t) => [
    h("code", { title: String(t.version) }, String(t.version).slice(0, 12)),
    `${formatNumber(t.weight)} %`,
    formatNumber(t.served),
    total ? `${formatNumber((100 * (Number(t.served) || 0)) / total, 1)} %` : "–",
  ]);
  return h("div", { "data-testid": "traffic" },
    h("h3", null, "Traffic split"),
    table([["Version"], ["Weight", "num"], ["Served", "num"], ["Share served", "num"]], rows, { "data-testid": "traffic-table" }));
}

/** The parts a record's own policy sets, for a list ("cors, rate_limit"), or "–". */
export function partNames(policy) {
  const names = policy && typeof policy === "object" ? Object.keys(policy).filter((k) => policy[k] !== null) : [];
  return names.length ? names.join(", ") : "–";
}
