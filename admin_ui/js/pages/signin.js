// Sign in with an API key; it is kept in sessionStorage, for this browser session only.
import { api, setKey } from "../api.js";
import { h } from "../dom.js";

export function render(main) {
  const input = h("input", {
    type: "password",
    name: "api-key",
    id: "api-key",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    placeholder: "egw_…",
    "aria-describedby": "key-help",
  });
  const problem = h("p", { class: "form-error", role: "alert", hidden: true });
  const submit = h("button", { type: "submit", class: "btn btn-primary" }, "Sign in");
  const form = h("form", { novalidate: true },
    h("label", { class: "field", for: "api-key" }, h("span", null, "API key"), input),
    problem,
    submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    problem.hidden = true;
    if (!key) {
      problem.textContent = "Enter an API key.";
      problem.hidden = false;
      input.focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = "Signing in…";
    try {
      await api("GET", "/stats", undefined, { key });
      setKey(key);
      window.dispatchEvent(new Event("edgegw:signed-in"));
    } catch (error) {
      problem.textContent = error.status === 401
        ? `That key was refused: ${error.message}.`
        : error.message;
      problem.hidden = false;
      input.select();
    } finally {
      submit.disabled = false;
      submit.textContent = "Sign in";
    }
  });
  main.append(h("section", { class: "signin panel" },
    h("h1", null, "Sign in"),
    h("p", { class: "muted", id: "key-help" },
      "Use an API key of this gateway. The first one was written to ",
      h("code", null, "<data-dir>/admin.key"),
      " when the gateway first started (",
      h("code", null, "cat var/admin.key"),
      " after ", h("code", null, "make run"), "). The key is kept for this browser session only."),
    form));
  input.focus();
}
