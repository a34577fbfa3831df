// API keys: create (the key is shown once, with a copy button) and revoke.
import { api, listAll } from "../api.js";
import { ago, button, field, formatTime, h, replace, safeId, select, table } from "../dom.js";
import { showOnce as showSecret } from "../secret.js";
import { LIMITS } from "../limits.js";
import * as notify from "../notify.js";

export function render(main) {
  const fresh = h("div", { "data-testid": "new-key" });
  const list = h("section", { class: "panel", "data-testid": "keys" });
  const name = h("input", { type: "text", maxlength: LIMITS.keyName, placeholder: "ci-deploy", "data-testid": "key-name" });
  const scope = select([["read", "read (GET only)"], ["admin", "admin (everything)"]], "read", { "data-testid": "key-scope" });
  const problem = h("p", { class: "form-error", role: "alert", hidden: true });
  const create = button("Create key", async () => {
    problem.hidden = true;
    try {
      const made = await api("POST", "/keys", { name: name.value.trim(), scope: scope.value });
      name.value = "";
      showOnce(made);
      await load();
    } catch (error) {
      problem.textContent = error.message;
      problem.hidden = false;
    }
  }, { class: "btn btn-primary", "data-testid": "create-key" });
  main.append(
    h("div", { class: "page-head" }, h("h1", null, "API keys")),
    fresh,
    h("div", { class: "grid-2" },
      list,
      h("section", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", null, "New key")),
        h("p", { class: "muted small" }, "The gateway keeps only a hash: the key is shown once, when it is created."),
        h("div", { class: "form-row" }, field("Name", name), field("Scope", scope)), problem,
        h("div", { class: "btn-row section-gap" }, create))));

  function showOnce(made) {
    showSecret(fresh, `The key '${made.name}' (${made.scope}).`, made.key, "key");
  }

  async function load() {
    let keys;
    try {
      keys = await listAll("/keys");
    } catch (error) {
      notify.error(error, "The keys could not be loaded:");
      return;
    }
    const rows = keys.map((k) => [
      h("strong", null, k.name), h("span", { class: "badge badge-plain" }, k.scope),
      h("span", { title: k.created_at }, formatTime(k.created_at)),
      h("span", { title: k.last_used_at || "" }, ago(k.last_used_at)),
      k.current ? h("span", { class: "tag tag-live" }, "this session") : null,
      button("Revoke", async () => {
        const warning = k.current ? " It is the key of this session: you will be signed out." : "";
        if (!(await notify.confirm(`Revoke the key '${k.name}'? Requests with it are refused from now on.${warning}`, "Revoke", true))) return;
        try {
          await api("DELETE", `/keys/${safeId(k.id)}`);
          notify.ok(`Revoked '${k.name}'.`);
          await load();
        } catch (error) {
          notify.error(error, "Could not revoke the key:");
        }
      }, { class: "btn btn-small btn-danger" }),
    ]);
    replace(list, h("div", { class: "panel-head" }, h("h2", null, "Keys")),
      table([["Name"], ["Scope"], ["Created"], ["Last used"], [""], [""]], rows));
  }

  load();
}
