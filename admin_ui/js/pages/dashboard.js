// Dashboard: endpoint counts by status, requests handled (GET /api/stats,
// from the same counters as /metrics), per-endpoint
// request rate and latency over the last minutes (GET /api/stats/history),
// and the cluster's nodes (GET /api/nodes).
import { api, ApiError } from "../api.js";
import { sparkline } from "../charts.js";
import { badge, formatDuration, formatMs, formatNumber, formatTime, h, replace, safeId, table } from "../dom.js";
import * as notify from "../notify.js";

const STATUSES = ["created", "compiled", "running", "stopped", "error"];
const REFRESH_MS = 5000;

export function render(main) {
  const cards = h("div", { class: "cards", "data-testid": "stats-cards" });
  const totals = h("section", { class: "panel" });
  const perEndpoint = h("section", { class: "panel" });
  const nodes = h("section", { class: "panel", "data-testid": "nodes", hidden: true });
  const quick = h("div");
  main.append(
    h("div", { class: "page-head" }, h("h1", null, "Dashboard"), h("span", { class: "spacer" }),
      h("a", { class: "btn btn-primary", href: "#/endpoints/new" }, "New endpoint")),
    quick, cards, totals, nodes, perEndpoint);
  let failed = false;
  let timer = null;
  let stopped = false;

  async function load() {
    try {
      const [stats, history, cluster] = await Promise.all([
        api("GET", "/stats"), api("GET", "/stats/history?top=20"), loadNodes()]);
      if (stopped) return;
      failed = false;
      drawCards(cards, stats);
      drawTotals(totals, history);
      drawNodes(nodes, cluster);
      drawEndpoints(perEndpoint, history, stats);
      replace(quick, stats.endpoints.total === 0 ? quickStart() : null);
    } catch (error) {
      if (!failed && !stopped) notify.error(error, "The dashboard could not be loaded:");
      failed = true;
    }
    if (!stopped) timer = setTimeout(load, REFRESH_MS);
  }
  load();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function card(label, value, extra, testid) {
  return h("div", { class: "card", "data-testid": testid }, h("div", { class: "card-label" }, label), h("div", { class: "card-value" }, value), extra || null);
}

function drawCards(el, stats) {
  const nodes = [card("Endpoints", h("a", { href: "#/endpoints" }, formatNumber(stats.endpoints.total)), null, "card-endpoints")];
  for (const status of STATUSES) {
    nodes.push(card(badge(status), formatNumber(stats.endpoints.by_status[status] || 0), null, "card-" + status));
  }
  // The data plane's counters, those of /metrics: "served" is every answer,
  // the gateway's own (endpoint "": no route, 503 while starting ...) included.
  const own = (stats.requests.by_endpoint || []).find((e) => e.endpoint === "");
  const ownText = own && own.served
    ? h("div", { class: "card-label", "data-testid": "card-served-own" }, `${formatNumber(own.served)} answered by the gateway itself (no endpoint)`)
    : null;
  nodes.push(
    card("Requests served", formatNumber(stats.requests.served), ownText, "card-served"),
    card("Failed (5xx)", formatNumber(stats.requests.failed), null, "card-failed"),
    card("Rejected", formatNumber(stats.requests.rejected), null, "card-rejected"),
    card("Workers", formatNumber(stats.workers), null, "card-workers"),
    card("Uptime", formatDuration(stats.uptime_seconds), h("div", { class: "card-label" }, "version " + stats.version)),
  );
  replace(el, nodes);
}

function last(values) {
  for (let i = values.length - 1; i >= 0; i--) if (values[i] !== null && values[i] !== undefined) return values[i];
  return null;
}

function windowText(history) {
  return `last ${Math.round(history.window / 60)} minutes, a sample every ${history.interval} s`;
}

function slots(history) {
  return Math.round(history.window / history.interval);
}

function drawTotals(el, history) {
  const rate = history.total.rate;
  const p50 = history.total.p50_ms;
  const n = slots(history);
  replace(el,
    h("div", { class: "panel-head" }, h("h2", null, "All endpoints"), h("span", { class: "muted small" }, windowText(history))),
    h("div", { class: "grid-2" },
      h("div", null,
        h("div", { class: "chart-cell" }, h("strong", null, "Requests per second"), h("span", { class: "spacer" }), h("span", { class: "chart-value" }, formatNumber(last(rate), 2))),
        sparkline(rate, { width: 600, height: 90, fill: true, slots: n, label: "requests per second" })),
      h("div", null,
        h("div", { class: "chart-cell" }, h("strong", null, "Median latency"), h("span", { class: "spacer" }), h("span", { class: "chart-value" }, formatMs(last(p50)))),
        sparkline(p50, { width: 600, height: 90, fill: true, alt: true, slots: n, label: "median latency in ms", format: formatMs }))));
}

// The nodes, or why they cannot be shown; null when this gateway has no node
// directory (404): the panel stays hidden. A failure here (the store down: 503)
// is said in the panel, and does not stop the rest of the dashboard.
async function loadNodes() {
  try {
    return { nodes: (await api("GET", "/nodes?limit=100")).items };
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    return { error: error.message || String(error) };
  }
}

function seen(value) {
  if (!value) return "never";
  const seconds = (Date.now() - new Date(value).getTime()) / 1000;
  if (!Number.isFinite(seconds)) return String(value);
  if (seconds < 120) return `${Math.max(0, Math.round(seconds))} s ago`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min ago`;
  return formatTime(value);
}

function stateBadge(state) {
  const known = state === "up" || state === "down";
  return h("span", { class: ["badge", state === "up" ? "badge-running" : known ? "badge-error" : "badge-plain"], dataset: { state: String(state) } }, String(state));
}

function drawNodes(el, cluster) {
  el.hidden = cluster === null;
  if (cluster === null) return;
  if (cluster.error) {
    replace(el, nodesHead("the gateways sharing this configuration"), h("p", { class: "empty", "data-testid": "nodes-error" }, "The nodes cannot be read: " + cluster.error));
    return;
  }
  const up = cluster.nodes.filter((n) => n.state === "up").length;
  const columns = [["Node"], ["Address"], ["Version"], ["State"], ["Workers", "num"], ["Last seen"]];
  const rows = cluster.nodes.map((n) => [
    h("span", null, String(n.name), n.self ? h("span", { class: "muted small" }, " (this node)") : null),
    n.address ? h("code", null, String(n.address)) : "–",
    n.version || "–",
    stateBadge(n.state),
    formatNumber(n.workers),
    h("span", { title: formatTime(n.last_seen) }, seen(n.last_seen)),
  ]);
  replace(el, nodesHead(`${up} of ${cluster.nodes.length} up, from their heartbeats`),
    table(columns, rows, { "data-testid": "nodes-table" }));
}

function nodesHead(summary) {
  return h("div", { class: "panel-head" }, h("h2", null, "Nodes"),
    h("span", { class: "muted small", "data-testid": "nodes-summary" }, summary));
}

// "Served" comes from the same counters as the "Requests served" card (since
// the data plane started), so the rows and the card agree; the window's own
// count is labelled as such.
function drawEndpoints(el, history, stats) {
  const minutes = Math.round(history.window / 60);
  const columns = [["Endpoint"], ["Served", "num"], [`Last ${minutes} min`, "num"], ["Requests per second"], ["Median latency (p50)"], ["Mean", "num"]];
  const served = new Map((stats.requests.by_endpoint || []).filter((e) => e.id).map((e) => [e.id, e.served]));
  const n = slots(history);
  const rows = history.endpoints.map((e) => [
    h("a", { class: "row-link", href: "#/endpoints/" + safeId(e.id) }, e.name === null ? e.id : e.name),
    h("span", { "data-testid": "endpoint-served" }, formatNumber(served.get(e.id) || 0)),
    formatNumber(e.window_requests),
    h("div", { class: "chart-cell" }, sparkline(e.rate, { slots: n, label: "requests per second" }), h("span", { class: "chart-value" }, formatNumber(last(e.rate), 2))),
    h("div", { class: "chart-cell" }, sparkline(e.p50_ms, { alt: true, slots: n, label: "median latency", format: formatMs }), h("span", { class: "chart-value" }, formatMs(last(e.p50_ms)))),
    formatMs(last(e.mean_ms)),
  ]);
  replace(el,
    h("div", { class: "panel-head" }, h("h2", null, "Per endpoint"), h("span", { class: "muted small" }, "the busiest running endpoints; served since the gateway started, as the cards count; charts of the " + windowText(history))),
    rows.length
      ? table(columns, rows, { "data-testid": "endpoint-charts" })
      : h("p", { class: "empty" }, "No endpoint ran in this window. Start one, then send it requests (its page has a test console)."));
}

function quickStart() {
  return h("section", { class: "panel quickstart", "data-testid": "quick-start" },
    h("h2", null, "Get started"),
    h("ol", null,
      h("li", null, h("a", { href: "#/endpoints/new" }, "Create an endpoint"), ": it starts from a working hello-world handler."),
      h("li", null, "Write its Rust code; ", h("kbd", null, "Ctrl"), "+", h("kbd", null, "S"), " compiles it and shows cargo's errors at their lines."),
      h("li", null, "Start it, and send it a request from its test console.")));
}
