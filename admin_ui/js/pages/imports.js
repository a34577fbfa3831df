// Import: an OpenAPI spec (text or file) or a zip bundle of a spec and handler files.
import { api, listAll } from "../api.js";
import { button, field, h, replace, safeId, select } from "../dom.js";

const MAX_FILE = 64 * 1024 * 1024;

export function render(main) {
  const result = h("section", { class: "panel", hidden: true, "data-testid": "import-result", "aria-live": "polite" });
  const specBox = h("section", { class: "panel" });
  const bundleBox = h("section", { class: "panel" });
  main.append(
    h("div", { class: "page-head" }, h("h1", null, "Import")),
    h("p", { class: "muted" }, "One endpoint per operation of an OpenAPI 3.0 or 3.1 spec. Operations without code get a stub that answers 501; importing again updates them and never replaces code someone wrote."),
    h("div", { class: "grid-2" }, specBox, bundleBox), result);

  let domains = [];
  let collections = [];

  function target() {
    const domain = h("input", { type: "text", value: "*", spellcheck: "false", list: "import-domains" });
    const domainList = h("datalist", { id: "import-domains" }, h("option", { value: "*" }), domains.map((d) => h("option", { value: d.host })));
    const collection = select([["", "None"], ...collections.map((c) => [c.id, c.name])], "");
    const create = h("input", { type: "checkbox" });
    const controls = h("div", { class: "form-grid" },
      field("Domain", domain, "a host without a domain record gets one"), domainList,
      field("Into the collection", collection),
      h("label", { class: "check wide" }, create, "Create a collection from the spec's title and server path"));
    const options = () => {
      const out = {};
      if (collection.value) out.collection_id = collection.value;
      else if (domain.value.trim() && domain.value.trim() !== "*") out.domain = domain.value.trim();
      if (create.checked && !collection.value) out.create_collection = true;
      return out;
    };
    return { controls, options };
  }

  function readText(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(reader.error);
      reader.readAsText(file);
    });
  }

  function draw() {
    const specText = h("textarea", { rows: 12, spellcheck: "false", placeholder: "openapi: 3.0.3\ninfo: ...", "data-testid": "spec-text" });
    const specFile = h("input", { type: "file", accept: ".yaml,.yml,.json,application/json,application/yaml,text/yaml" });
    specFile.addEventListener("change", async () => {
      const file = specFile.files[0];
      if (!file) return;
      if (file.size > MAX_FILE) {
        showError(`${file.name} is larger than 64 MiB.`);
        return;
      }
      try {
        specText.value = await readText(file);
      } catch (error) {
        showError(`${file.name} could not be read: ${error.message}`);
      }
    });
    const specTarget = target();
    replace(specBox,
      h("div", { class: "panel-head" }, h("h2", null, "OpenAPI spec")),
      field("Spec (YAML or JSON)", specText),
      field("…or load it from a file", specFile),
      specTarget.controls,
      h("div", { class: "btn-row section-gap" }, button("Import spec", async () => {
        if (!specText.value.trim()) {
          showError("Paste a spec or choose a file first.");
          return;
        }
        await run(() => api("POST", "/import/openapi", Object.assign({ spec: specText.value }, specTarget.options())));
      }, { class: "btn btn-primary", "data-testid": "import-spec" })));

    const zip = h("input", { type: "file", accept: ".zip,application/zip" });
    const compile = h("input", { type: "checkbox", checked: true });
    const start = h("input", { type: "checkbox" });
    const bundleTarget = target();
    replace(bundleBox,
      h("div", { class: "panel-head" }, h("h2", null, "Zip bundle")),
      h("p", { class: "muted small" }, "A zip with openapi.yaml (or .json) and one .rs file per operation, named after its operationId (getPetById.rs or get_pet_by_id.rs), at the root or in handlers/."),
      field("Bundle (.zip)", zip),
      bundleTarget.controls,
      h("label", { class: "check" }, compile, "Compile the handlers"),
      h("label", { class: "check" }, start, "Start the ones that compile"),
      h("div", { class: "btn-row section-gap" }, button("Upload bundle", async () => {
        const file = zip.files[0];
        if (!file) {
          showError("Choose a .zip file first.");
          return;
        }
        if (file.size > MAX_FILE) {
          showError(`${file.name} is larger than 64 MiB.`);
          return;
        }
        const query = new URLSearchParams();
        for (const [k, v] of Object.entries(bundleTarget.options())) query.set(k, String(v));
        if (compile.checked) query.set("compile", "true");
        if (start.checked) query.set("start", "true");
        await run(() => api("POST", `/import/bundle?${query}`, undefined, { raw: file, contentType: "application/zip" }));
      }, { class: "btn btn-primary", "data-testid": "import-bundle" })));
  }

  function showError(message) {
    result.hidden = false;
    replace(result, h("h2", null, "Import failed"), h("p", { class: "form-error", role: "alert" }, message));
  }

  async function run(call) {
    result.hidden = false;
    replace(result, h("span", { class: "busy" }, "Importing… (compiling can take a while)"));
    let data;
    try {
      data = await call();
    } catch (error) {
      showError(error.message + (error.body && error.body.path ? ` (at ${error.body.path})` : "") + (error.body && error.body.entry ? ` (entry ${error.body.entry})` : ""));
      return;
    }
    const link = (e) => h("li", null, h("a", { href: "#/endpoints/" + safeId(e.id) }, e.name), " ", h("code", null, `${e.method} ${e.path}`));
    const names = (label, list) => (list && list.length ? h("p", null, h("strong", null, label + ": "), list.join(", ")) : null);
    replace(result,
      h("h2", null, "Imported"),
      names("Created", data.created), names("Updated", data.updated), names("Unchanged", data.unchanged),
      names("Compiled", data.compiled), names("Started", data.started),
      data.unmatched_files && data.unmatched_files.length ? names("Files that match no operation", data.unmatched_files) : null,
      h("h3", null, "Endpoints"), h("ul", null, (data.endpoints || []).map(link)),
      data.errors && data.errors.length
        ? [h("h3", null, "Problems"), h("ul", { class: "diagnostics" }, data.errors.map((e) => h("li", null,
          h("strong", null, `${e.operation} (${e.stage})`), e.file ? [" in ", h("code", null, e.file)] : null, ": ", e.message,
          e.endpoint_id ? [" — ", h("a", { href: "#/endpoints/" + safeId(e.endpoint_id) }, "open the endpoint")] : null)))]
        : null);
  }

  Promise.all([listAll("/domains").catch(() => []), listAll("/collections").catch(() => [])]).then(([d, c]) => {
    domains = d;
    collections = c;
    draw();
  });
  draw();
}
