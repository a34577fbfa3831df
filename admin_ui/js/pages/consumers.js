// Consumers: who calls the API behind the gateway with an API key (a route's
// policy with auth type api_key). Create, enable and disable, give a key
// (shown once, with Copy), delete a key or a consumer.
import { api, listAll } from "../api.js";
import { button, field, formatTime, h, replace, safeId, table } from "../dom.js";
import * as notify from "../notify.js";
import { showOnce } from "../secret.js";

export function render(main) {
  const fresh = h("div", { "data-testid": "new-consumer-key" });
  const list = h("section", { class: "panel", "data-testid": "consumers" });
  const name = h("input", { type: "text", spellcheck: "false", placeholder: "mobile-app", "data-testid": "consumer-name" });
  const enabled = h("input", { type: "checkbox", checked: true, "data-testid": "consumer-enabled" });
  const problem = h("p", { class: "form-error", role: "alert", hidden: true, "data-testid": "consumer-error" });
  const create = button("Create consumer", async () => {
    problem.hidden = true;
    try {
      const made = await api("POST", "/consumers", { name: name.value.trim(), enabled: enabled.checked });
      name.value = "";
      notify.ok(`Consumer '${made.name}' created; give it a key.`);
      await load();
    } catch (error) {
      problem.textContent = error.message;
      problem.hidden = false;
    }
  }, { class: "btn btn-primary", "data-testid": "create-consumer" });
  main.append(
    h("div", { class: "page-head" }, h("h1", null, "Consumers")),
    h("p", { class: "muted" }, "The clients of your API. A route whose policy has ", h("code", null, '"auth": {"type": "api_key"}'),
      " lets a request in when it carries a key of an enabled consumer, and the handler is told the consumer's name."),
    fresh,
    h("div", { class: "grid-2" },
      list,
      h("section", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", null, "New consumer")),
        h("div", { class: "form-row" }, field("Name", name), h("label", { class: "check" }, enabled, "Enabled")), problem,
        h("div", { class: "btn-row section-gap" }, create))));

  let stopped = false;

  async function act(doing, call, done) {
    try {
      await call();
      if (done) notify.ok(done);
    } catch (error) {
      notify.error(error, `Could not ${doing}:`);
    }
    await load();
  }

  function keyRows(consumer) {
    const keys = Array.isArray(consumer.keys) ? consumer.keys : [];
    if (!keys.length) return h("span", { class: "muted" }, "no key");
    return h("ul", { class: "plain-list", "data-testid": "consumer-keys" }, keys.map((k) => h("li", { dataset: { key: String(k.id) } },
      h("code", { title: String(k.id) }, String(k.id).slice(0, 8)), " ",
      h("span", { class: "muted small", title: k.created_at }, formatTime(k.created_at)), " ",
      button("Delete key", async () => {
        if (!(await notify.confirm(`Delete this key of '${consumer.name}'? Requests with it are refused from now on.`, "Delete key", true))) return;
        await act("delete the key", () => api("DELETE", `/consumers/${safeId(consumer.id)}/keys/${safeId(k.id)}`), "Key deleted.");
      }, { class: "btn btn-small btn-danger", "data-testid": "delete-consumer-key" }))));
  }

  async function load() {
    let consumers;
    try {
      consumers = await listAll("/consumers");
    } catch (error) {
      if (stopped) return;
      replace(list, h("div", { class: "panel-head" }, h("h2", null, "Consumers")),
        h("p", { class: "form-error", "data-testid": "consumers-error" }, `The consumers could not be loaded: ${error.message}`));
      return;
    }
    if (stopped) return;
    const rows = consumers.map((c) => [
      h("strong", null, c.name),
      h("span", { class: ["badge", c.enabled ? "badge-running" : "badge-stopped"], "data-testid": "consumer-state" }, c.enabled ? "enabled" : "disabled"),
      keyRows(c),
      h("span", { title: c.created_at }, formatTime(c.created_at)),
      h("div", { class: "btn-row" },
        button("New key", async () => {
          try {
            const made = await api("POST", `/consumers/${safeId(c.id)}/keys`);
            showOnce(fresh, `A key of '${c.name}'.`, made.key, "consumer-key");
          } catch (error) {
            notify.error(error, "Could not make a key:");
          }
          await load();
        }, { class: "btn btn-small btn-primary", "data-testid": "new-consumer-key-button" }),
        button(c.enabled ? "Disable" : "Enable", () => act(c.enabled ? "disable the consumer" : "enable the consumer",
          () => api("PUT", `/consumers/${safeId(c.id)}`, { enabled: !c.enabled }),
          `'${c.name}' ${c.enabled ? "disabled: its keys are refused" : "enabled"}.`), { class: "btn btn-small", "data-testid": "toggle-consumer" }),
        button("Delete", async () => {
          if (!(await notify.confirm(`Delete the consumer '${c.name}' and its keys?`, "Delete", true))) return;
          await act("delete the consumer", () => api("DELETE", `/consumers/${safeId(c.id)}`), `Deleted '${c.name}'.`);
        }, { class: "btn btn-small btn-danger", "data-testid": "delete-consumer" })),
    ]);
    replace(list, h("div", { class: "panel-head" }, h("h2", null, "Consumers")),
      rows.length
        ? table([["Name"], ["State"], ["Keys"], ["Created"], [""]], rows, { "data-testid": "consumers-table" })
        : h("p", { class: "empty" }, "No consumers yet."));
  }

  load();
  return () => {
    stopped = true;
  };
}
