// Endpoints: the list with status badges, filters by domain, collection and
// status, and a search over name, path and route. Filters live in the URL
// (#/endpoints?status=running&q=users), so a filtered list can be linked.
import { listAll } from "../api.js";
import { ago, badge, button, field, h, methodBadge, replace, safeId, select } from "../dom.js";
import * as notify from "../notify.js";

const STATUSES = ["created", "compiled", "running", "stopped", "error"];
const REFRESH_MS = 10000;
const COLUMNS = [["Name"], ["Method"], ["Route"], ["Status"], ["Version"], ["Workers", "num"], ["Updated"]];

export function render(main, params) {
  const query = params.query;
  const state = {
    q: query.get("q") || "",
    domain: query.get("domain") || "",
    collection: query.get("collection") || "",
    status: query.get("status") || "",
  };
  const search = h("input", { type: "search", value: state.q, placeholder: "Name, path or route", "aria-label": "Search endpoints", "data-testid": "search" });
  const domainSelect = select([["", "All domains"]], state.domain, { "aria-label": "Domain", "data-testid": "filter-domain" });
  const collectionSelect = select([["", "All collections"]], state.collection, { "aria-label": "Collection", "data-testid": "filter-collection" });
  const statusSelect = select([["", "Any status"], ...STATUSES.map((s) => [s, s])], state.status, { "aria-label": "Status", "data-testid": "filter-status" });
  const count = h("span", { class: "muted", "data-testid": "endpoint-count" });
  const tbody = h("tbody");
  const empty = h("p", { class: "empty", hidden: true });
  const listTable = h("div", { class: "table-wrap" },
    h("table", { "data-testid": "endpoints-table" },
      h("thead", null, h("tr", null, COLUMNS.map(([text, cls]) => h("th", { class: cls, scope: "col" }, text)))),
      tbody));
  main.append(
    h("div", { class: "page-head" }, h("h1", null, "Endpoints"), count, h("span", { class: "spacer" }),
      button("Refresh", () => load(true)),
      h("a", { class: "btn btn-primary", href: "#/endpoints/new", "data-testid": "new-endpoint" }, "New endpoint")),
    h("section", { class: "panel" },
      h("div", { class: "toolbar" },
        h("label", { class: "field grow" }, h("span", null, "Search"), search),
        field("Domain", domainSelect),
        field("Collection", collectionSelect),
        field("Status", statusSelect)),
      listTable, empty));

  let endpoints = [];
  let collections = new Map();
  let timer = null;
  let stopped = false;
  let failed = false;

  function matches(e) {
    if (state.status && e.status !== state.status) return false;
    if (state.domain && e.domain !== state.domain) return false;
    if (state.collection === "none" && e.collection_id) return false;
    if (state.collection && state.collection !== "none" && e.collection_id !== state.collection) return false;
    if (state.q) {
      const q = state.q.toLowerCase();
      const paths = (e.routes || []).map((r) => `${r.method} ${r.path}`).join("\n");
      const text = `${e.name}\n${e.path}\n${paths}\n${e.route}\n${e.description || ""}`.toLowerCase();
      if (!text.includes(q)) return false;
    }
    return true;
  }

  function draw() {
    const shown = endpoints.filter(matches);
    count.textContent = shown.length === endpoints.length ? `${endpoints.length}` : `${shown.length} of ${endpoints.length}`;
    const rows = shown.map((e) => {
      const collection = e.collection_id ? collections.get(e.collection_id) : null;
      return h("tr", { dataset: { id: e.id } },
        h("td", null, h("a", { class: "row-link", href: "#/endpoints/" + safeId(e.id) }, e.name),
          collection ? h("div", { class: "muted small" }, collection.name) : null),
        h("td", null, methodBadge(e.method)),
        h("td", null, h("code", null, e.route),
          (e.routes || []).length > 1
            ? h("div", { class: "muted small", "data-testid": "more-routes" }, "also " + e.routes.slice(1).map((r) => `${r.method} ${r.path}`).join(", "))
            : null),
        h("td", null, badge(e.status), e.enabled ? null : h("span", { class: "badge badge-plain" }, "disabled")),
        h("td", null, h("code", null, e.version || "–")),
        h("td", { class: "num" }, String((e.workers || []).length)),
        h("td", { class: "muted", title: e.updated_at }, ago(e.updated_at)));
    });
    tbody.replaceChildren(...rows);
    listTable.hidden = shown.length === 0;
    empty.hidden = shown.length !== 0;
    if (!endpoints.length) {
      replace(empty, "No endpoints yet. ", h("a", { href: "#/endpoints/new" }, "Create the first one"), " — it starts from a working hello-world handler — or ", h("a", { href: "#/import" }, "import an OpenAPI spec"), ".");
    } else {
      replace(empty, "No endpoint matches these filters.");
    }
  }

  let filled = "";
  function fillFilters(domains) {
    const hosts = new Set(["*", ...domains.map((d) => d.host), ...endpoints.map((e) => e.domain)]);
    // Not rebuilt when nothing changed: an open drop-down would close on every refresh.
    const signature = JSON.stringify([[...hosts], [...collections.values()].map((c) => [c.id, c.name])]);
    if (signature === filled) return;
    filled = signature;
    replace(domainSelect, h("option", { value: "" }, "All domains"), [...hosts].sort().map((host) => h("option", { value: host }, host === "*" ? "* (any host)" : host)));
    domainSelect.value = state.domain;
    replace(collectionSelect, h("option", { value: "" }, "All collections"), h("option", { value: "none" }, "In no collection"),
      [...collections.values()].map((c) => h("option", { value: c.id }, c.name)));
    collectionSelect.value = state.collection;
  }

  function remember() {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(state)) if (v) q.set(k, v);
    const hash = "#/endpoints" + (q.toString() ? "?" + q : "");
    // Not a navigation: the list stays, the URL says what it shows.
    history.replaceState(null, "", hash);
  }

  for (const [control, name] of [[domainSelect, "domain"], [collectionSelect, "collection"], [statusSelect, "status"]]) {
    control.addEventListener("change", () => {
      state[name] = control.value;
      remember();
      draw();
    });
  }
  search.addEventListener("input", () => {
    state.q = search.value.trim();
    remember();
    draw();
  });

  async function load(explicit) {
    clearTimeout(timer);
    try {
      const [items, domains, cols] = await Promise.all([
        listAll("/endpoints"),
        listAll("/domains").catch(() => []),
        listAll("/collections").catch(() => []),
      ]);
      if (stopped) return;
      endpoints = items.sort((a, b) => a.name.localeCompare(b.name) || a.route.localeCompare(b.route));
      collections = new Map(cols.map((c) => [c.id, c]));
      fillFilters(domains);
      draw();
      failed = false;
      if (!main.dataset.ready) {
        main.dataset.ready = "1";
        // Time to interactive of this page, for bench/admin_ui.py (docs/performance.md).
        performance.mark("edgegw:endpoints-ready");
      }
    } catch (error) {
      if (!failed || explicit) notify.error(error, "The endpoints could not be loaded:");
      failed = true;
    }
    if (!stopped && document.visibilityState !== "hidden") timer = setTimeout(load, REFRESH_MS);
    else if (!stopped) timer = setTimeout(load, REFRESH_MS * 3);
  }
  load();
  search.focus();
  return () => {
    stopped = true;
    clearTimeout(timer);
    delete main.dataset.ready;
  };
}
