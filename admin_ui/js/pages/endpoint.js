// The endpoint editor: definition, code (compile with diagnostics at their
// lines), lifecycle, test console, live logs, workers, settings, versions
// with rollback, service bindings, and its traffic policy (its own, the
// effective one with where each part came from, a split's versions). #/endpoints/new starts a new one from
// the hello-world template.
import { api, listAll } from "../api.js";
import { CodeEditor } from "../editor.js";
import {
  badge, button, field, formatClock, formatNumber, formatTime, h, replace, safeId, select, setEnabled, table,
} from "../dom.js";
import * as notify from "../notify.js";
import { LIMITS } from "../limits.js";
import { PolicyEditor, effectiveView, trafficView } from "../policy.js";
import { HELLO_WORLD } from "../template.js";
import { TestConsole } from "../testconsole.js";

const METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
const POLL_MS = 2000;
const MAX_LOG_LINES = 1500;
const DEFINITION = ["name", "routes", "domain", "collection_id", "description", "enabled", "code"];
const NUMBER_SETTINGS = [
  ["min_instances", "Min instances", "workers kept alive (0: start on the first request)"],
  ["max_instances", "Max instances", "most workers under load"],
  ["max_queue", "Max queue", "requests waiting for a worker; beyond: 503"],
  ["timeout", "Timeout (s)", "per request; beyond: 504, worker replaced"],
  ["max_requests", "Max requests", "a worker is replaced after this many (0: never)"],
  ["idle_timeout", "Idle timeout (s)", "an extra worker idle this long stops"],
  ["pipeline", "Pipeline", "requests written to a worker ahead of its answers"],
  ["concurrency", "Concurrency", "requests an async handler's worker serves at once"],
];

export function render(main, params, context) {
  const page = new EndpointPage(main, params.id);
  context.leaveGuard = () => (page.dirty() || page.policyDirty() ? "The endpoint has changes that are not saved. Leave this page and lose them?" : null);
  if (params.query.get("compile") === "1") {
    history.replaceState(null, "", "#/endpoints/" + safeId(params.id));
    page.compileOnLoad = true;
  }
  page.start();
  return () => page.destroy();
}

class EndpointPage {
  constructor(main, id) {
    this.main = main;
    this.id = id;
    this.record = null;
    this.saved = null;
    this.timers = [];
    this.stopped = false;
    this.lastLog = null;
    this.domains = [];
    this.collections = [];
    this.services = [];
    this.onKey = (event) => this.key(event);
    this.onUnload = (event) => {
      if (this.dirty()) {
        event.preventDefault();
        event.returnValue = "";
      }
    };
  }

  async start() {
    document.addEventListener("keydown", this.onKey);
    window.addEventListener("beforeunload", this.onUnload);
    this.main.append(h("p", { class: "loading" }, "Loading…"));
    try {
      const [record, domains, collections, services] = await Promise.all([
        this.id ? api("GET", `/endpoints/${safeId(this.id)}`) : this.newRecord(),
        listAll("/domains").catch(() => []),
        listAll("/collections").catch(() => []),
        listAll("/services").catch(() => []),
      ]);
      if (this.stopped) return;
      this.domains = domains;
      this.collections = collections;
      this.services = services;
      this.build(record);
    } catch (error) {
      if (this.stopped) return;
      replace(this.main, h("div", { class: "page-head" }, h("a", { class: "crumb", href: "#/endpoints" }, "← Endpoints")),
        h("p", { class: "panel form-error" }, error.status === 404 ? "There is no such endpoint (it may have been deleted)." : error.message));
      return;
    }
    if (this.id) {
      this.poll();
      this.pollLogs();
      this.loadVersions();
      if (this.compileOnLoad) this.compileButton.click();
    }
  }

  destroy() {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    document.removeEventListener("keydown", this.onKey);
    window.removeEventListener("beforeunload", this.onUnload);
  }

  later(fn, ms) {
    if (!this.stopped) this.timers.push(setTimeout(fn, ms));
  }

  /** Defaults of a new endpoint: a name and path no other endpoint has yet. */
  async newRecord() {
    const existing = await listAll("/endpoints").catch(() => []);
    const names = new Set(existing.map((e) => e.name));
    const paths = new Set(existing.map((e) => e.path));
    let n = 1;
    const suffix = () => (n === 1 ? "" : `-${n}`);
    while (names.has("hello" + suffix()) || paths.has("/hello" + suffix())) n++;
    return {
      id: null, name: "hello" + suffix(), method: "GET", path: "/hello" + suffix(),
      routes: [{ method: "GET", path: "/hello" + suffix() }], domain: "*", collection_id: null,
      description: "", enabled: true, code: HELLO_WORLD, status: "new", settings: null, workers: [], route: "",
    };
  }

  // -- building -------------------------------------------------------------

  build(record) {
    this.record = record;
    const isNew = !record.id;
    this.title = h("h1", { "data-testid": "endpoint-title" });
    this.statusBadge = h("span", { "data-testid": "endpoint-status" });
    this.route = h("span", { class: "subtitle", "data-testid": "endpoint-route" });
    this.versionText = h("span", { class: "subtitle" });
    this.saveButton = button("Save", () => this.save(), { "data-testid": "save", title: "Save the definition and code" });
    this.compileButton = button("Compile", () => this.compile(), {
      class: "btn btn-primary", "data-testid": "compile", title: "Save and compile (Ctrl+S or Ctrl+Enter)",
      "aria-keyshortcuts": "Control+S Control+Enter",
    });
    this.startButton = button("Start", () => this.lifecycle("start"), { "data-testid": "start" });
    this.stopButton = button("Stop", () => this.lifecycle("stop"), { "data-testid": "stop" });
    this.restartButton = button("Restart", () => this.lifecycle("restart"), { "data-testid": "restart", title: "New workers on the latest compiled version, then drain the old ones" });
    this.deleteButton = button("Delete", () => this.remove(), { class: "btn btn-danger", "data-testid": "delete" });
    const actions = isNew
      ? [button("Create", () => this.create(), { "data-testid": "create" }), this.compileButton]
      : [this.saveButton, this.compileButton, this.startButton, this.stopButton, this.restartButton, this.deleteButton];
    this.lastError = h("p", { class: "form-error", role: "alert", hidden: true, "data-testid": "last-error" });

    // definition
    this.nameInput = h("input", { type: "text", required: true, maxlength: LIMITS.endpointName, "data-testid": "name" });
    // The routes: a method and a path each, all served by this one handler.
    this.routeRows = h("div", { class: "route-rows", "data-testid": "routes" });
    this.addRouteButton = button("Add route", () => this.addRoute(), { class: "btn btn-small", "data-testid": "add-route", title: `At most ${LIMITS.maxRoutes} routes, all served by this handler` });
    this.domainSelect = h("select", { "data-testid": "domain" });
    this.collectionSelect = h("select", { "data-testid": "collection" });
    this.descriptionInput = h("input", { type: "text", "data-testid": "description" });
    this.enabledInput = h("input", { type: "checkbox", "data-testid": "enabled" });
    this.domainHint = h("span", { class: "field-hint" });
    for (const control of [this.nameInput, this.domainSelect, this.collectionSelect, this.descriptionInput, this.enabledInput]) {
      control.addEventListener("input", () => this.changed());
      control.addEventListener("change", () => this.changed());
    }
    this.collectionSelect.addEventListener("change", () => this.collectionChanged());
    const definition = h("section", { class: "panel", "aria-labelledby": "def-title" },
      h("div", { class: "panel-head" }, h("h2", { id: "def-title" }, "Definition")),
      h("div", { class: "form-grid" },
        field("Name", this.nameInput),
        h("div", { class: "field wide" }, h("span", null, "Routes"), this.routeRows,
          h("div", { class: "btn-row" }, this.addRouteButton,
            h("span", { class: "field-hint" }, "one handler serves them all: it tells them apart by req.method and its path parameters; {name} captures a segment"))),
        h("label", { class: "field" }, h("span", null, "Domain"), this.domainSelect, this.domainHint),
        field("Collection", this.collectionSelect),
        h("label", { class: "check" }, this.enabledInput, "Enabled"),
        h("div", { class: "wide" }, field("Description", this.descriptionInput))));

    // code
    this.editor = new CodeEditor({ value: record.code || "", onChange: () => this.changed() });
    this.compileStatus = h("p", { class: "compile-status", "data-testid": "compile-status", role: "status" });
    this.diagnosticList = h("ol", { class: "diagnostics", "data-testid": "diagnostics" });
    const code = h("section", { class: "panel", "aria-labelledby": "code-title" },
      h("div", { class: "panel-head" }, h("h2", { id: "code-title" }, "Handler code"), h("span", { class: "spacer" }),
        h("span", { class: "muted small ce-help" }, h("kbd", null, "Tab"), " indents · ", h("kbd", null, "Ctrl"), "+", h("kbd", null, "S"), " compiles · ",
          h("kbd", null, "Esc"), " ", h("kbd", null, "Tab"), " leaves the editor")),
      this.editor.root, this.compileStatus, this.diagnosticList);

    const head = h("div", { class: "page-head" },
      h("a", { class: "crumb", href: "#/endpoints" }, "← Endpoints"),
      this.title, this.statusBadge, this.route, this.versionText,
      h("span", { class: "spacer" }),
      h("div", { class: "btn-row" }, actions));

    if (isNew) {
      replace(this.main, head,
        h("p", { class: "muted" }, "A new endpoint starts from a working hello-world handler. Create it, or compile it straight away (that creates it first)."),
        h("div", { class: "stack" }, definition, code));
    } else {
      this.console = new TestConsole();
      this.logs = h("div", { class: "logs", "data-testid": "logs", role: "log", "aria-live": "off", tabindex: "0" });
      const logsPanel = h("section", { class: "panel", "aria-labelledby": "logs-title" },
        h("div", { class: "panel-head" }, h("h2", { id: "logs-title" }, "Logs"), h("span", { class: "muted small" }, "the workers' stderr, live"),
          h("span", { class: "spacer" }), button("Clear", () => this.logs.replaceChildren(), { class: "btn btn-small" })),
        this.logs);
      this.workers = h("div", { "data-testid": "workers" });
      this.settings = h("div");
      this.versions = h("div", { "data-testid": "versions" });
      this.bindings = h("div", { "data-testid": "bindings" });
      this.policy = new PolicyEditor("endpoint");
      this.effective = h("div");
      this.traffic = h("div");
      const savePolicy = button("Save policy", () => this.savePolicy(), { class: "btn btn-primary", "data-testid": "save-policy" });
      const policyPanel = h("section", { class: "panel section-gap", "aria-labelledby": "policy-title", "data-testid": "policy" },
        h("div", { class: "panel-head" }, h("h2", { id: "policy-title" }, "Traffic policy"),
          h("span", { class: "muted small" }, "CORS, client addresses, consumers' keys or JWT, rate limits, limits, a traffic split: checked by the gateway before the handler")),
        h("div", { class: "grid-2" },
          h("div", null, h("h3", null, "This endpoint's own"), this.policy.root, h("div", { class: "btn-row" }, savePolicy)),
          h("div", null, h("h3", null, "Effective: what its requests get"), this.effective, this.traffic)));
      // The code takes the page's whole width (long lines are not cut off at
      // half of it); the test console and the logs sit side by side below.
      replace(this.main, head, this.lastError,
        h("div", { class: "stack" }, definition, code),
        h("div", { class: "grid-2 section-gap" }, this.console.root, logsPanel),
        h("div", { class: "grid-2 section-gap" },
          h("div", { class: "stack" },
            h("section", { class: "panel", "aria-labelledby": "workers-title" }, h("div", { class: "panel-head" }, h("h2", { id: "workers-title" }, "Workers")), this.workers),
            h("section", { class: "panel", "aria-labelledby": "versions-title" }, h("div", { class: "panel-head" }, h("h2", { id: "versions-title" }, "Versions"),
              h("span", { class: "muted small" }, "every successful compile; roll back in one click")), this.versions)),
          h("div", { class: "stack" },
            h("section", { class: "panel", "aria-labelledby": "settings-title" }, h("div", { class: "panel-head" }, h("h2", { id: "settings-title" }, "Pool settings")), this.settings),
            h("section", { class: "panel", "aria-labelledby": "bindings-title" }, h("div", { class: "panel-head" }, h("h2", { id: "bindings-title" }, "Service bindings"),
              h("span", { class: "muted small" }, "services the handler reaches by name")), this.bindings))),
        policyPanel);
    }
    this.fillDefinition(record);
    this.showLive(record);
    if (!isNew) {
      this.drawSettings(record);
      this.drawBindings(record);
      this.policy.set(record.policy);
      const [host, path] = splitRoute(record);
      this.console.setDefaults(record.method, examplePath(path), host);
    }
    this.changed();
    if (isNew) this.nameInput.focus();
  }

  fillDefinition(record) {
    this.nameInput.value = record.name;
    this.fillRoutes(record.routes && record.routes.length ? record.routes : [{ method: record.method, path: record.path }]);
    const hosts = new Set(["*", ...this.domains.map((d) => d.host), record.domain]);
    replace(this.domainSelect, [...hosts].sort().map((host) => h("option", { value: host }, host === "*" ? "* (any host)" : host)));
    this.domainSelect.value = record.domain;
    replace(this.collectionSelect, h("option", { value: "" }, "None"), this.collections.map((c) => h("option", { value: c.id }, c.name + (c.base_path ? ` (${c.base_path})` : ""))));
    this.collectionSelect.value = record.collection_id || "";
    this.descriptionInput.value = record.description || "";
    this.enabledInput.checked = record.enabled !== false;
    if (this.editor.value !== (record.code || "")) this.editor.value = record.code || "";
    this.saved = this.current();
    this.collectionChanged();
  }

  /** A collection with a domain decides the endpoint's domain. */
  collectionChanged() {
    const collection = this.collections.find((c) => c.id === this.collectionSelect.value);
    const domain = collection && collection.domain_id ? this.domains.find((d) => d.id === collection.domain_id) : null;
    if (domain) {
      if (![...this.domainSelect.options].some((o) => o.value === domain.host)) this.domainSelect.append(h("option", { value: domain.host }, domain.host));
      this.domainSelect.value = domain.host;
      this.domainSelect.disabled = true;
      this.domainHint.textContent = `set by the collection '${collection.name}'`;
    } else {
      this.domainSelect.disabled = false;
      this.domainHint.textContent = "";
    }
    this.changed();
  }

  current() {
    return {
      name: this.nameInput.value,
      routes: this.routeInputs.map(([method, path]) => ({ method: method.value, path: path.value.trim() })),
      domain: this.domainSelect.value,
      collection_id: this.collectionSelect.value || null,
      description: this.descriptionInput.value,
      enabled: this.enabledInput.checked,
      code: this.editor.value,
    };
  }

  dirty() {
    if (!this.saved || !this.editor) return false;
    const now = this.current();
    return DEFINITION.some((k) => !same(now[k], this.saved[k]));
  }

  /** One row per route: its method, its path, and a button that removes it (not the last). */
  fillRoutes(routes) {
    this.routeInputs = [];
    replace(this.routeRows, null);
    for (const route of routes) this.addRoute(route, false);
  }

  addRoute(route = { method: "GET", path: "" }, focus = true) {
    const i = this.routeInputs.length;
    const suffix = i === 0 ? "" : `-${i + 1}`;
    const method = select(METHODS, METHODS.includes(route.method) ? route.method : "GET", { "data-testid": "method" + suffix, "aria-label": `Method of route ${i + 1}` });
    const path = h("input", { type: "text", required: true, spellcheck: "false", placeholder: "/users/{id}", value: route.path, "data-testid": "path" + suffix, "aria-label": `Path of route ${i + 1}` });
    path.value = route.path;
    const row = h("div", { class: "route-row" }, method, path,
      button("Remove", () => this.removeRoute(row), { class: "btn btn-small", "data-testid": "remove-route" + suffix, title: "Stop serving this route" }));
    for (const control of [method, path]) {
      control.addEventListener("input", () => this.changed());
      control.addEventListener("change", () => this.changed());
    }
    this.routeInputs.push([method, path, row]);
    this.routeRows.append(row);
    this.routesChanged();
    if (focus) path.focus();
  }

  removeRoute(row) {
    const kept = this.routeInputs.filter(([, , r]) => r !== row).map(([m, p]) => ({ method: m.value, path: p.value }));
    this.fillRoutes(kept);
  }

  /** The last route cannot be removed, nor more than the limit added. */
  routesChanged() {
    for (const [, , row] of this.routeInputs) setEnabled(row.querySelector("button"), this.routeInputs.length > 1);
    setEnabled(this.addRouteButton, this.routeInputs.length < LIMITS.maxRoutes);
    this.changed();
  }

  changed() {
    if (!this.saveButton) return;
    const dirty = this.dirty();
    setEnabled(this.saveButton, dirty);
    this.saveButton.textContent = dirty ? "Save" : "Saved";
  }

  showLive(record) {
    const isNew = !record.id;
    this.title.textContent = isNew ? "New endpoint" : record.name;
    replace(this.statusBadge, isNew ? null : badge(record.status));
    this.route.textContent = record.route || "";
    this.versionText.textContent = record.version ? `version ${record.version}` : "";
    if (isNew) return;
    const running = record.status === "running";
    setEnabled(this.startButton, !running && record.enabled !== false);
    setEnabled(this.stopButton, running);
    setEnabled(this.restartButton, running);
    // A compile failure shown under the editor is not said again at the top.
    this.lastError.hidden = !record.last_error || this.compileStatus.classList.contains("err");
    this.lastError.textContent = record.last_error ? `Last error: ${record.last_error}` : "";
    this.drawWorkers(record);
    this.drawPolicy(record);
  }

  // -- policy ---------------------------------------------------------------

  policyDirty() {
    return Boolean(this.policy && this.policy.dirty());
  }

  /** The effective policy and the split's counts, as the last GET said (every poll). */
  drawPolicy(record) {
    if (!this.effective) return;
    const collection = this.collections.find((c) => c.id === record.collection_id);
    // Redrawn only when it changed: a selection in it survives the polls.
    const drawn = JSON.stringify([record.effective_policy, record.policy_sources, record.traffic, collection && collection.name, record.domain]);
    if (drawn === this.policyDrawn) return;
    this.policyDrawn = drawn;
    replace(this.effective, effectiveView(record, { collection: collection && collection.name, domain: record.domain }));
    replace(this.traffic, trafficView(record));
  }

  async savePolicy() {
    let policy;
    try {
      policy = this.policy.value();
    } catch {
      return; // said under the text
    }
    try {
      const record = await api("PUT", `/endpoints/${safeId(this.record.id)}`, { policy });
      this.record = record;
      this.policy.set(record.policy);
      this.showLive(record);
      notify.ok(record.status === "running" ? "Policy saved; the endpoint's routes follow it now." : "Policy saved.");
    } catch (error) {
      if (!this.policy.showProblem(error)) notify.error(error, "The policy could not be saved:");
    }
  }

  // -- actions --------------------------------------------------------------

  key(event) {
    const mod = event.ctrlKey || event.metaKey;
    if (mod && !event.altKey && (event.key === "s" || event.key === "S" || event.key === "Enter")) {
      if (event.key === "Enter" && this.console && this.console.root.contains(event.target)) return;
      event.preventDefault();
      if (!this.compileButton.disabled) this.compileButton.click();
    }
  }

  payload(fields) {
    const now = this.current();
    const out = {};
    for (const k of fields) out[k] = now[k];
    const collection = this.collections.find((c) => c.id === now.collection_id);
    if (collection && collection.domain_id) delete out.domain; // the collection's domain applies
    return out;
  }

  async create(thenCompile = false) {
    try {
      const record = await api("POST", "/endpoints", this.payload(DEFINITION));
      this.saved = this.current();
      notify.ok(`Endpoint '${record.name}' created.`);
      location.hash = "#/endpoints/" + safeId(record.id) + (thenCompile ? "?compile=1" : "");
      return record;
    } catch (error) {
      notify.error(error, "The endpoint could not be created:");
      return null;
    }
  }

  async save() {
    const now = this.current();
    const changed = DEFINITION.filter((k) => !same(now[k], this.saved[k]));
    if (!changed.length) return true;
    try {
      const record = await api("PUT", `/endpoints/${safeId(this.record.id)}`, this.payload(changed));
      this.record = record;
      this.saved = now;
      this.showLive(record);
      this.changed();
      return true;
    } catch (error) {
      notify.error(error, "The changes could not be saved:");
      return false;
    }
  }

  async compile() {
    if (!this.record.id) {
      await this.create(true); // the endpoint's own page compiles it (?compile=1)
      return;
    }
    if (!(await this.save())) return;
    this.compileStatus.className = "compile-status";
    replace(this.compileStatus, h("span", { class: "busy" }, this.record.artifact ? "Compiling…" : "Compiling… (the first compile of a gateway builds the common crates and can take a minute)"));
    try {
      const data = await api("POST", `/endpoints/${safeId(this.record.id)}/compile`);
      this.record = data;
      this.showLive(data);
      this.showDiagnostics([]);
      this.compileStatus.className = "compile-status ok";
      this.compileStatus.textContent = `Compiled in ${data.build.seconds.toFixed(2)} s${data.build.cached ? " (the same code was built before)" : ""}: version ${data.build.digest.slice(0, 12)}.` +
        (data.status === "running" ? " Restart to serve it." : " Start it to serve it.");
      this.loadVersions();
    } catch (error) {
      this.compileStatus.className = "compile-status err";
      if (error.status === 422 && Array.isArray(error.body.diagnostics)) {
        this.showDiagnostics(error.body.diagnostics);
        this.compileStatus.textContent = compileFailure(error.body.diagnostics);
      } else {
        // Said here only, under the editor: no notice repeating it.
        this.compileStatus.textContent = `Compile failed: ${error.message}`;
      }
      this.refresh();
    }
  }

  showDiagnostics(list) {
    this.editor.setDiagnostics(list);
    const items = list.map((d) => {
      const level = d.level === "warning" ? "warning" : "error";
      const where = d.line ? `line ${d.line}${d.column ? ", column " + d.column : ""}` : "(no line)";
      const jump = d.line
        ? h("button", { type: "button", class: "diag-jump diag-loc", onclick: () => this.editor.goTo(d.line, d.column || 1) }, where)
        : h("span", { class: "diag-loc" }, where);
      return h("li", { class: "diag-" + level, dataset: { line: d.line ? String(d.line) : "", level } },
        h("strong", null, level + ": "), jump, d.message,
        d.rendered ? h("details", null, h("summary", null, "cargo's full message"), h("pre", { class: "diag-rendered" }, d.rendered)) : null);
    });
    this.diagnosticList.replaceChildren(...items);
  }

  async lifecycle(action) {
    if (this.dirty() && !(await notify.confirm("The code or definition has unsaved changes; the workers run the last compiled version. Go on?", "Go on"))) return;
    try {
      const record = await api("POST", `/endpoints/${safeId(this.record.id)}/${action}`);
      this.record = record;
      this.showLive(record);
      notify.ok({ start: "Started", stop: "Stopped", restart: "Restarted" }[action] + ` '${record.name}'.`);
      this.loadVersions();
    } catch (error) {
      notify.error(error, `Could not ${action} the endpoint:`);
      this.refresh();
    }
  }

  async remove() {
    if (!(await notify.confirm(`Delete the endpoint '${this.record.name}'? Its workers stop, and its versions and bindings are deleted.`, "Delete", true))) return;
    try {
      await api("DELETE", `/endpoints/${safeId(this.record.id)}`);
      this.saved = this.current(); // nothing left to lose
      notify.ok(`Deleted '${this.record.name}'.`);
      location.hash = "#/endpoints";
    } catch (error) {
      notify.error(error, "Could not delete the endpoint:");
    }
  }

  // -- live state -----------------------------------------------------------

  async refresh() {
    try {
      const record = await api("GET", `/endpoints/${safeId(this.record.id)}`);
      if (this.stopped) return;
      const changedElsewhere = record.updated_at !== this.record.updated_at;
      this.record = record;
      this.showLive(record);
      if (changedElsewhere && !this.policyDirty()) this.policy.set(record.policy);
      if (changedElsewhere && !this.dirty()) {
        this.fillDefinition(record);
        this.drawSettings(record);
        this.drawBindings(record);
      }
      this.pollFailed = false;
    } catch (error) {
      if (this.stopped) return;
      if (error.status === 404) {
        notify.error("This endpoint was deleted.");
        this.stopped = true;
      } else if (!this.pollFailed && error.status !== 401) {
        // Said once, not every 2 s; said again after it worked in between.
        notify.error(error, "The endpoint's state could not be read:");
        this.pollFailed = true;
      }
    }
  }

  async poll() {
    await this.refresh();
    this.later(() => this.poll(), POLL_MS);
  }

  async pollLogs() {
    try {
      const query = this.lastLog === null ? "" : `?since=${encodeURIComponent(this.lastLog)}`;
      const data = await api("GET", `/endpoints/${safeId(this.record.id)}/logs${query}`);
      if (this.stopped) return;
      this.appendLogs(data.lines);
    } catch {
      // the record poll reports what matters (a deleted endpoint, a lost key)
    }
    this.later(() => this.pollLogs(), POLL_MS);
  }

  appendLogs(lines) {
    if (!lines.length) return;
    const box = this.logs;
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 30;
    const fragment = document.createDocumentFragment();
    for (const entry of lines) {
      this.lastLog = entry.time;
      const stream = /^[a-z]+$/.test(entry.stream) ? entry.stream : "other";
      fragment.append(h("div", { class: ["log-line", "log-" + stream], title: entry.timestamp },
        h("span", { class: "log-time" }, formatClock(entry.time)),
        h("span", { class: "log-stream" }, entry.stream),
        // The request the worker was serving (docs/sdk/request.md): its trace id, short.
        entry.trace_id ? h("span", { class: "log-trace", title: "trace " + entry.trace_id }, entry.trace_id.slice(0, 8)) : null,
        entry.line));
    }
    box.append(fragment);
    while (box.childElementCount > MAX_LOG_LINES) box.firstElementChild.remove();
    if (atBottom) box.scrollTop = box.scrollHeight;
  }

  drawWorkers(record) {
    if (!this.workers) return;
    const workers = record.workers || [];
    const anyProcess = workers.some((w) => w.process !== undefined);
    const columns = [["PID", "num"], ["Version"], ["State"], ["Served", "num"], ["In flight", "num"]];
    if (anyProcess) columns.push(["Process", "num"]);
    const rows = workers.map((w) => {
      const cells = [String(w.pid ?? "–"), h("code", null, (w.version || "").slice(0, 12)), h("span", { class: "badge badge-plain" }, w.state), formatNumber(w.served), formatNumber(w.in_flight)];
      if (anyProcess) cells.push(String(w.process ?? ""));
      return cells;
    });
    // In a cluster, every node's count; the table lists this node's workers.
    const nodes = Object.entries(record.nodes || {});
    replace(this.workers,
      h("p", { class: "muted small" }, `Queue: ${record.queue || 0} waiting · status ${record.status}` + (record.version ? ` · serving ${record.version}` : "")),
      nodes.length > 1
        ? h("p", { class: "muted small", "data-testid": "workers-per-node" },
          "Workers per node: " + nodes.map(([name, count]) => `${name} ${count}`).join(" · ") + " (this node's below)")
        : null,
      rows.length ? table(columns, rows, { "data-testid": "workers-table" }) : h("p", { class: "empty" }, record.status === "running" ? "No worker at the moment (min instances 0: one starts on the next request)." : "No workers: the endpoint is not running."));
  }

  // -- versions -------------------------------------------------------------

  async loadVersions() {
    if (!this.versions) return;
    let data;
    try {
      data = await api("GET", `/endpoints/${safeId(this.record.id)}/versions?limit=20`);
    } catch (error) {
      replace(this.versions, h("p", { class: "form-error" }, `The versions could not be loaded: ${error.message}`));
      return;
    }
    if (this.stopped) return;
    const columns = [["Version"], ["Compiled"], ["Build", "num"], [""], [""]];
    const rows = data.items.map((v) => [
      h("code", null, v.short),
      h("span", { title: v.created_at }, formatTime(v.created_at)),
      `${Number(v.compile_seconds).toFixed(2)} s`,
      h("span", null, v.live ? h("span", { class: "tag tag-live" }, "live") : null, v.current ? h("span", { class: "tag" }, "current code") : null,
        v.available ? null : h("span", { class: "tag" }, "binary pruned")),
      h("div", { class: "btn-row" },
        !v.live && v.available ? button("Roll back", () => this.rollback(v), { class: "btn btn-small", "data-testid": "rollback", title: "Serve this version now, without compiling" }) : null,
        !v.current ? button("Load code", () => this.loadCode(v), { class: "btn btn-small", title: "Put this version's code in the editor" }) : null),
    ]);
    replace(this.versions, rows.length ? table(columns, rows) : h("p", { class: "empty" }, "No versions yet: compile the code."),
      data.total > data.items.length ? h("p", { class: "muted small" }, `The newest ${data.items.length} of ${data.total}.`) : null);
  }

  async rollback(version) {
    try {
      const record = await api("POST", `/endpoints/${safeId(this.record.id)}/rollback`, { version: version.digest });
      this.record = record;
      this.showLive(record);
      notify.ok(`Now serving version ${version.short}.`);
      this.loadVersions();
    } catch (error) {
      notify.error(error, "Rollback failed:");
    }
  }

  async loadCode(version) {
    if (this.editor.value !== this.saved.code && !(await notify.confirm("Replace the code in the editor (it has unsaved changes) with this version's?", "Replace"))) return;
    this.editor.value = version.code;
    this.changed();
    notify.ok(`The code of version ${version.short} is in the editor; save or compile to keep it.`);
  }

  // -- settings -------------------------------------------------------------

  drawSettings(record) {
    const settings = record.settings || {};
    const inputs = {};
    const numberFields = NUMBER_SETTINGS.filter(([name]) => name in settings).map(([name, label, hint]) => {
      inputs[name] = h("input", { type: "number", min: 0, step: "any", value: String(settings[name]), "data-setting": name });
      return field(label, inputs[name], hint);
    });
    const env = h("textarea", { rows: 3, spellcheck: "false", placeholder: "NAME=value" });
    env.value = Object.entries(settings.env || {}).map(([k, v]) => `${k}=${v}`).join("\n");
    const deps = h("textarea", { rows: 3, spellcheck: "false", placeholder: '{"regex": "1"}' });
    deps.value = Object.keys(settings.dependencies || {}).length ? JSON.stringify(settings.dependencies, null, 2) : "";
    const limits = settings.limits && typeof settings.limits === "object" ? settings.limits : null;
    const limitInputs = {};
    const limitFields = limits ? Object.entries(limits).map(([name, value]) => {
      limitInputs[name] = h("input", { type: "number", min: 0, step: 1, value: String(value) });
      return field(name.replace(/_/g, " "), limitInputs[name]);
    }) : [];
    const problem = h("p", { class: "form-error", role: "alert", hidden: true });
    const save = button("Save settings", async () => {
      problem.hidden = true;
      const change = {};
      try {
        for (const [name, input] of Object.entries(inputs)) {
          const value = Number(input.value);
          if (input.value.trim() === "" || Number.isNaN(value)) throw new Error(`${name} must be a number`);
          if (value !== settings[name]) change[name] = value;
        }
        const envObject = {};
        env.value.split("\n").forEach((line, i) => {
          if (!line.trim()) return;
          const eq = line.indexOf("=");
          if (eq <= 0) throw new Error(`environment line ${i + 1} must be NAME=value`);
          envObject[line.slice(0, eq).trim()] = line.slice(eq + 1);
        });
        if (JSON.stringify(envObject) !== JSON.stringify(settings.env || {})) change.env = envObject;
        let depsObject = {};
        if (deps.value.trim()) {
          try {
            depsObject = JSON.parse(deps.value);
          } catch (e) {
            throw new Error(`dependencies must be a JSON object: ${e.message}`);
          }
        }
        if (JSON.stringify(depsObject) !== JSON.stringify(settings.dependencies || {})) change.dependencies = depsObject;
        if (limits) {
          const limitChange = {};
          for (const [name, input] of Object.entries(limitInputs)) {
            const value = Number(input.value);
            if (input.value.trim() === "" || Number.isNaN(value)) throw new Error(`limit ${name} must be a number`);
            if (value !== limits[name]) limitChange[name] = value;
          }
          if (Object.keys(limitChange).length) change.limits = limitChange;
        }
      } catch (error) {
        problem.textContent = error.message;
        problem.hidden = false;
        return;
      }
      if (!Object.keys(change).length) {
        notify.ok("No setting changed.");
        return;
      }
      try {
        const updated = await api("PUT", `/endpoints/${safeId(this.record.id)}`, { settings: change });
        this.record = updated;
        this.showLive(updated);
        this.drawSettings(updated);
        notify.ok(updated.status === "running" ? "Settings saved; the workers were replaced without dropping a request." : "Settings saved; they apply at the next start.");
      } catch (error) {
        problem.textContent = error.message;
        problem.hidden = false;
      }
    }, { class: "btn btn-primary", "data-testid": "save-settings" });
    replace(this.settings,
      h("div", { class: "form-grid" }, numberFields),
      h("div", { class: "form-grid" }, h("div", { class: "wide" }, field("Environment of the workers, one NAME=value a line", env)),
        h("div", { class: "wide" }, field("Extra crates (dependencies), as JSON", deps, "a change needs a compile"))),
      limits ? h("fieldset", null, h("legend", null, "Limits of each worker (0: the gateway's own)"), h("div", { class: "form-grid" }, limitFields)) : null,
      problem, h("div", { class: "btn-row" }, save));
  }

  // -- bindings -------------------------------------------------------------

  drawBindings(record) {
    const bound = Object.entries(record.services || {});
    const byId = new Map(this.services.map((s) => [s.id, s]));
    const rows = bound.map(([pool, serviceId]) => {
      const service = byId.get(serviceId);
      return [h("code", null, pool), service ? `${service.name} (${service.service_type})` : serviceId,
        button("Unbind", async () => {
          try {
            await api("DELETE", `/endpoints/${safeId(record.id)}/services/${encodeURIComponent(pool)}`);
            await this.refreshBindings();
          } catch (error) {
            notify.error(error, "Could not unbind:");
          }
        }, { class: "btn btn-small" })];
    });
    const poolInput = h("input", { type: "text", value: "main", maxlength: LIMITS.poolId, spellcheck: "false", pattern: "[A-Za-z0-9_-]+" });
    const serviceSelect = select(this.services.map((s) => [s.id, `${s.name} (${s.service_type})`]), undefined, { "aria-label": "Service" });
    const bind = button("Bind", async () => {
      try {
        await api("POST", `/endpoints/${safeId(record.id)}/services`, { pool_id: poolInput.value.trim(), service_id: serviceSelect.value });
        await this.refreshBindings();
        notify.ok(`Bound as '${poolInput.value.trim()}'.`);
      } catch (error) {
        notify.error(error, "Could not bind the service:");
      }
    }, { class: "btn btn-primary" });
    replace(this.bindings,
      rows.length ? table([["Name (pool_id)"], ["Service"], [""]], rows) : h("p", { class: "empty" }, "No services bound."),
      this.services.length
        ? h("div", { class: "form-row" }, field("Name the handler uses", poolInput), field("Service", serviceSelect), bind)
        : h("p", { class: "muted" }, "No services yet: ", h("a", { href: "#/services" }, "create one"), " (SQLite, PostgreSQL, Redis or storage), then bind it here."));
  }

  async refreshBindings() {
    const [record, services] = await Promise.all([api("GET", `/endpoints/${safeId(this.record.id)}`), listAll("/services").catch(() => this.services)]);
    this.services = services;
    this.record = record;
    this.drawBindings(record);
  }
}

/** [host, full path] of an endpoint's route "GET host/full/path". */
function splitRoute(record) {
  const target = (record.route || "").split(" ").slice(1).join(" ");
  const slash = target.indexOf("/");
  if (slash < 0) return ["*", record.path];
  return [target.slice(0, slash), target.slice(slash)];
}

/** Whether two definition values are the same (the routes compared as lists). */
function same(a, b) {
  return a === b || JSON.stringify(a) === JSON.stringify(b);
}

/** A path to try: {param} segments get an example value. */
function examplePath(path) {
  return path.replace(/\{[A-Za-z_][A-Za-z0-9_]*\}/g, "1");
}


/** A failed compile, said once: how many errors, and the first with its line (the list below has them all). */
function compileFailure(diagnostics) {
  const errors = diagnostics.filter((d) => d.level !== "warning");
  const count = errors.length || diagnostics.length;
  const first = errors[0] || diagnostics[0];
  const head = `Compile failed: ${count} error${count === 1 ? "" : "s"}`;
  if (!first) return head + ".";
  const message = String(first.message || "").split("\n")[0];
  return `${head}; ${first.line ? `line ${first.line}: ` : ""}${message}`;
}
