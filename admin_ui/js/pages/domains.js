// Domains and collections: where endpoints are served, and the traffic
// policy each gives the endpoints in it.
import { api, listAll } from "../api.js";
import { button, field, h, replace, safeId, select, table } from "../dom.js";
import { LIMITS } from "../limits.js";
import * as notify from "../notify.js";
import { PolicyEditor, partNames } from "../policy.js";

export function render(main) {
  const domainsBox = h("section", { class: "panel", "data-testid": "domains" });
  const collectionsBox = h("section", { class: "panel", "data-testid": "collections" });
  main.append(
    h("div", { class: "page-head" }, h("h1", null, "Domains & collections")),
    h("p", { class: "muted" }, "A domain is a host name endpoints answer on (* is any host). A collection groups endpoints under a base path, on a domain or not."),
    h("div", { class: "grid-2" }, domainsBox, collectionsBox));

  let domains = [];
  let collections = [];
  let endpoints = [];
  let stopped = false;
  let editingDomain = null;
  let editingCollection = null;

  async function load() {
    try {
      [domains, collections, endpoints] = await Promise.all([listAll("/domains"), listAll("/collections"), listAll("/endpoints")]);
    } catch (error) {
      notify.error(error, "Domains and collections could not be loaded:");
      return;
    }
    if (stopped) return;
    drawDomains();
    drawCollections();
  }

  async function remove(kind, record, label) {
    const path = `/${kind}/${safeId(record.id)}`;
    if (!(await notify.confirm(`Delete ${label}?`, "Delete", true))) return;
    try {
      await api("DELETE", path);
      notify.ok(`Deleted ${label}.`);
    } catch (error) {
      if (error.status !== 409) {
        notify.error(error, "Could not delete:");
        return;
      }
      const more = `${error.message}\n\nDelete it with everything in it? Its endpoints are stopped and deleted.`;
      if (!(await notify.confirm(more, "Delete everything", true))) return;
      try {
        const answer = await api("DELETE", path + "?cascade=true");
        notify.ok(`Deleted ${label}, ${answer.cascaded.endpoints} endpoint(s) and ${answer.cascaded.collections} collection(s).`);
      } catch (again) {
        notify.error(again, "Could not delete:");
      }
    }
    await load();
  }

  function drawDomains() {
    const host = h("input", { type: "text", spellcheck: "false", placeholder: "api.example.com", "data-testid": "domain-host" });
    const description = h("input", { type: "text" });
    const policy = new PolicyEditor("domain");
    if (editingDomain) {
      host.value = editingDomain.host;
      description.value = editingDomain.description || "";
      policy.set(editingDomain.policy);
    }
    const problem = h("p", { class: "form-error", role: "alert", hidden: true });
    const submit = button(editingDomain ? "Save" : "Add domain", async () => {
      problem.hidden = true;
      try {
        const body = { host: host.value.trim(), description: description.value };
        withPolicy(body, policy, editingDomain);
        if (editingDomain) await api("PUT", `/domains/${safeId(editingDomain.id)}`, body);
        else await api("POST", "/domains", body);
        notify.ok(editingDomain ? "Domain saved; its endpoints moved with it." : `Domain '${body.host}' added.`);
        editingDomain = null;
        await load();
      } catch (error) {
        if (policy.showProblem(error) || error.policyText) return;
        problem.textContent = error.message;
        problem.hidden = false;
      }
    }, { class: "btn btn-primary", "data-testid": "domain-save" });
    const rows = domains.map((d) => [
      h("code", null, d.host),
      d.description,
      String(endpoints.filter((e) => e.domain === d.host).length),
      h("span", { "data-testid": "domain-policy" }, partNames(d.policy)),
      h("div", { class: "btn-row" },
        button("Edit", () => { editingDomain = d; drawDomains(); }, { class: "btn btn-small" }),
        button("Delete", () => remove("domains", d, `the domain '${d.host}'`), { class: "btn btn-small btn-danger" })),
    ]);
    replace(domainsBox,
      h("div", { class: "panel-head" }, h("h2", null, "Domains")),
      rows.length ? table([["Host"], ["Description"], ["Endpoints", "num"], ["Policy"], [""]], rows) : h("p", { class: "empty" }, "No domains yet: endpoints answer on any host (*)."),
      h("h3", null, editingDomain ? `Edit '${editingDomain.host}'` : "Add a domain"),
      h("div", { class: "form-row" }, field("Host", host), field("Description", description)),
      policy.root,
      problem,
      h("div", { class: "btn-row" }, submit, editingDomain ? button("Cancel", () => { editingDomain = null; drawDomains(); }) : null));
  }

  function drawCollections() {
    const byDomain = new Map(domains.map((d) => [d.id, d]));
    const name = h("input", { type: "text", maxlength: LIMITS.collectionName, "data-testid": "collection-name" });
    const domainSelect = select([["", "No domain (each endpoint's own)"], ...domains.map((d) => [d.id, d.host])], "");
    const basePath = h("input", { type: "text", spellcheck: "false", placeholder: "/v1" });
    const description = h("input", { type: "text" });
    const policy = new PolicyEditor("collection");
    if (editingCollection) {
      policy.set(editingCollection.policy);
      name.value = editingCollection.name;
      domainSelect.value = editingCollection.domain_id || "";
      basePath.value = editingCollection.base_path || "";
      description.value = editingCollection.description || "";
    }
    const problem = h("p", { class: "form-error", role: "alert", hidden: true });
    const submit = button(editingCollection ? "Save" : "Add collection", async () => {
      problem.hidden = true;
      const body = { name: name.value.trim(), domain_id: domainSelect.value || null, base_path: basePath.value.trim(), description: description.value };
      try {
        withPolicy(body, policy, editingCollection);
        if (editingCollection) await api("PUT", `/collections/${safeId(editingCollection.id)}`, body);
        else await api("POST", "/collections", body);
        notify.ok(editingCollection ? "Collection saved; its endpoints moved with it." : `Collection '${body.name}' added.`);
        editingCollection = null;
        await load();
      } catch (error) {
        if (policy.showProblem(error) || error.policyText) return;
        problem.textContent = error.message;
        problem.hidden = false;
      }
    }, { class: "btn btn-primary", "data-testid": "collection-save" });
    const rows = collections.map((c) => [
      h("a", { class: "row-link", href: "#/endpoints?collection=" + safeId(c.id) }, c.name),
      c.domain_id && byDomain.get(c.domain_id) ? h("code", null, byDomain.get(c.domain_id).host) : h("span", { class: "muted" }, "–"),
      h("code", null, c.base_path || "–"),
      String(endpoints.filter((e) => e.collection_id === c.id).length),
      h("span", { "data-testid": "collection-policy" }, partNames(c.policy)),
      h("div", { class: "btn-row" },
        button("Edit", () => { editingCollection = c; drawCollections(); }, { class: "btn btn-small" }),
        button("Delete", () => remove("collections", c, `the collection '${c.name}'`), { class: "btn btn-small btn-danger" })),
    ]);
    replace(collectionsBox,
      h("div", { class: "panel-head" }, h("h2", null, "Collections")),
      rows.length ? table([["Name"], ["Domain"], ["Base path"], ["Endpoints", "num"], ["Policy"], [""]], rows) : h("p", { class: "empty" }, "No collections yet."),
      h("h3", null, editingCollection ? `Edit '${editingCollection.name}'` : "Add a collection"),
      h("div", { class: "form-grid" }, field("Name", name), field("Domain", domainSelect), field("Base path", basePath, "e.g. /v1 or /shops/{shop}"),
        h("div", { class: "wide" }, field("Description", description)), policy.root),
      problem,
      h("div", { class: "btn-row" }, submit, editingCollection ? button("Cancel", () => { editingCollection = null; drawCollections(); }) : null));
  }

  /** The form's policy in body: when it has one, or the record had one (an emptied text removes it). */
  function withPolicy(body, policy, editing) {
    let value;
    try {
      value = policy.value();
    } catch (error) {
      error.policyText = true; // said under the text already
      throw error;
    }
    if (Object.keys(value).length || (editing && "policy" in editing)) body.policy = value;
  }

  load();
  return () => {
    stopped = true;
  };
}
