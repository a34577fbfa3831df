// Services: create, edit (secrets masked: the API never sends them back),
// test the connection, delete, and bind to endpoints.
import { api, listAll } from "../api.js";
import { button, field, formatTime, h, replace, safeId, select, table } from "../dom.js";
import { LIMITS, MASK, SERVICE_FIELDS } from "../limits.js";
import * as notify from "../notify.js";

// The config fields of each type (docs/api.md, "Services"), generated from the server's table.
const TYPES = SERVICE_FIELDS;

export function render(main) {
  const list = h("div", { "data-testid": "services-list" });
  const editor = h("section", { class: "panel", "data-testid": "service-editor" });
  main.append(
    h("div", { class: "page-head" }, h("h1", null, "Services"), h("span", { class: "muted" }, "databases, Redis and storage that handlers reach through the gateway"),
      h("span", { class: "spacer" }), button("New service", () => edit(null), { class: "btn btn-primary", "data-testid": "new-service" })),
    h("div", { class: "grid-2" }, h("section", { class: "panel" }, list), editor));

  let services = [];
  let endpoints = [];
  let stopped = false;

  function bindingsOf(serviceId) {
    const out = [];
    for (const e of endpoints) {
      for (const [pool, id] of Object.entries(e.services || {})) if (id === serviceId) out.push({ endpoint: e, pool });
    }
    return out;
  }

  async function load(selectId) {
    try {
      [services, endpoints] = await Promise.all([listAll("/services"), listAll("/endpoints")]);
    } catch (error) {
      notify.error(error, "The services could not be loaded:");
      return;
    }
    if (stopped) return;
    const rows = services.map((s) => {
      const bound = bindingsOf(s.id);
      return [
        h("a", { class: "row-link", href: "#/services", onclick: (event) => { event.preventDefault(); edit(s); } }, s.name),
        h("span", { class: "badge badge-plain" }, s.service_type),
        bound.length ? bound.map((b) => h("div", { class: "small" }, h("a", { href: "#/endpoints/" + safeId(b.endpoint.id) }, b.endpoint.name), " as ", h("code", null, b.pool))) : h("span", { class: "muted" }, "not bound"),
      ];
    });
    replace(list, h("div", { class: "panel-head" }, h("h2", null, "All services")),
      rows.length ? table([["Name"], ["Type"], ["Bound to"]], rows) : h("p", { class: "empty" }, "No services yet."));
    const chosen = selectId ? services.find((s) => s.id === selectId) : null;
    if (chosen) edit(chosen);
    else if (!editor.childElementCount) edit(null);
  }

  function edit(service) {
    const isNew = !service;
    const typeSelect = select(Object.keys(TYPES), isNew ? "sqlite" : service.service_type, { disabled: !isNew, "data-testid": "service-type" });
    const name = h("input", { type: "text", value: isNew ? "" : service.name, maxlength: LIMITS.serviceName, spellcheck: "false", required: true, "data-testid": "service-name" });
    const configBox = h("div", { class: "form-grid" });
    const problem = h("p", { class: "form-error", role: "alert", hidden: true });
    const result = h("p", { role: "status", "data-testid": "service-test-result" });
    let controls = {};

    function drawConfig() {
      const type = typeSelect.value;
      const config = isNew ? {} : service.config || {};
      controls = {};
      replace(configBox, TYPES[type].map(([key, kind, initial, hint]) => {
        let control;
        const value = key in config ? config[key] : null;
        if (kind === "bool") {
          control = h("input", { type: "checkbox", checked: value === null ? initial : Boolean(value) });
          controls[key] = [kind, control];
          return h("label", { class: "check" }, control, key.replace(/_/g, " "));
        }
        if (kind === "choice") {
          control = select(initial, value === null ? initial[0] : value);
        } else {
          control = h("input", {
            type: kind === "int" ? "number" : kind === "secret" ? "password" : "text",
            value: value === null || value === undefined ? (kind === "int" ? String(initial) : "") : String(value),
            autocomplete: kind === "secret" ? "new-password" : "off",
            spellcheck: "false",
          });
        }
        controls[key] = [kind, control];
        const shownHint = kind === "secret" && value === MASK ? `stored; leave ${MASK} to keep it, empty it to remove it` : hint;
        return field(key.replace(/_/g, " "), control, shownHint);
      }));
    }

    function config() {
      const out = {};
      for (const [key, [kind, control]] of Object.entries(controls)) {
        if (kind === "bool") out[key] = control.checked;
        else if (kind === "int") {
          if (control.value.trim() === "") continue;
          out[key] = Number(control.value);
        } else if (kind === "choice") out[key] = control.value;
        else if (control.value === "") {
          if (!isNew && (kind === "secret" || key === "username")) out[key] = null;
        } else out[key] = control.value;
      }
      return out;
    }

    typeSelect.addEventListener("change", drawConfig);
    drawConfig();

    const save = button(isNew ? "Create" : "Save", async () => {
      problem.hidden = true;
      try {
        const saved = isNew
          ? await api("POST", "/services", { name: name.value.trim(), service_type: typeSelect.value, config: config() })
          : await api("PUT", `/services/${safeId(service.id)}`, { name: name.value.trim(), config: config() });
        notify.ok(isNew ? `Service '${saved.name}' created.` : `Service '${saved.name}' saved; it applies at once.`);
        await load(saved.id);
      } catch (error) {
        problem.textContent = error.message;
        problem.hidden = false;
      }
    }, { class: "btn btn-primary", "data-testid": "service-save" });

    const actions = [save];
    if (!isNew) {
      actions.push(
        button("Test connection", async () => {
          result.className = "muted";
          replace(result, h("span", { class: "busy" }, "Testing…"));
          try {
            const answer = await api("POST", `/services/${safeId(service.id)}/test`);
            result.className = "form-ok";
            result.textContent = `Connected: it answered in ${answer.latency_ms} ms.`;
          } catch (error) {
            result.className = "form-error";
            result.textContent = `The test failed: ${error.message}` + (error.body && error.body.kind ? ` (${error.body.kind})` : "");
          }
        }, { "data-testid": "service-test" }),
        button("Delete", async () => {
          if (!(await notify.confirm(`Delete the service '${service.name}'?`, "Delete", true))) return;
          try {
            await api("DELETE", `/services/${safeId(service.id)}`);
            notify.ok(`Deleted '${service.name}'.`);
            replace(editor);
            await load();
          } catch (error) {
            notify.error(error, "Could not delete the service:");
          }
        }, { class: "btn btn-danger" }),
      );
    }

    let bindSection = null;
    if (!isNew) {
      const endpointSelect = select(endpoints.map((e) => [e.id, `${e.name} (${e.route})`]), undefined, { "aria-label": "Endpoint" });
      const pool = h("input", { type: "text", value: "main", maxlength: LIMITS.poolId, spellcheck: "false" });
      const bound = bindingsOf(service.id);
      bindSection = h("div", null,
        h("h3", null, "Bindings"),
        bound.length
          ? table([["Endpoint"], ["Name (pool_id)"], [""]], bound.map((b) => [
            h("a", { href: "#/endpoints/" + safeId(b.endpoint.id) }, b.endpoint.name), h("code", null, b.pool),
            button("Unbind", async () => {
              try {
                await api("DELETE", `/endpoints/${safeId(b.endpoint.id)}/services/${encodeURIComponent(b.pool)}`);
                await load(service.id);
              } catch (error) {
                notify.error(error, "Could not unbind:");
              }
            }, { class: "btn btn-small" })]))
          : h("p", { class: "muted" }, "Not bound to any endpoint."),
        endpoints.length
          ? h("div", { class: "form-row" }, field("Endpoint", endpointSelect), field("Name the handler uses", pool),
            button("Bind", async () => {
              try {
                await api("POST", `/endpoints/${safeId(endpointSelect.value)}/services`, { service_id: service.id, pool_id: pool.value.trim() });
                notify.ok(`Bound to the endpoint as '${pool.value.trim()}'.`);
                await load(service.id);
              } catch (error) {
                notify.error(error, "Could not bind:");
              }
            }, { class: "btn btn-primary", "data-testid": "service-bind" }))
          : h("p", { class: "muted" }, "No endpoints to bind it to yet."));
    }

    replace(editor,
      h("div", { class: "panel-head" }, h("h2", null, isNew ? "New service" : `Service '${service.name}'`),
        isNew ? null : h("span", { class: "muted small" }, "created " + formatTime(service.created_at))),
      h("div", { class: "form-grid" }, field("Name", name), field("Type", typeSelect, isNew ? null : "fixed once created")),
      h("h3", null, "Configuration"), configBox, problem,
      h("div", { class: "btn-row" }, actions), result, bindSection);
  }

  load();
  return () => {
    stopped = true;
  };
}
