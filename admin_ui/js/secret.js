// A secret the API shows once (an API key, a consumer's key): shown in a box
// with a Copy button until Done; the gateway keeps only its hash.
import { button, h, replace } from "./dom.js";

/** Put the box in `place`: title says whose secret it is; the value's input is data-testid `${testid}-value`. */
export function showOnce(place, title, secret, testid) {
  const value = h("input", { type: "text", readOnly: true, value: secret, "aria-label": title, "data-testid": `${testid}-value` });
  const copied = h("span", { class: "form-ok", role: "status" });
  const copy = button("Copy", async () => {
    try {
      await navigator.clipboard.writeText(secret);
    } catch {
      value.select();
      document.execCommand("copy");
    }
    copied.textContent = "Copied.";
  }, { class: "btn btn-primary", "data-testid": `copy-${testid}` });
  replace(place, h("div", { class: "secret-box", role: "status" },
    h("strong", null, `${title} Copy it now: it is not shown again.`),
    h("div", { class: "secret-value" }, value, copy, button("Done", () => replace(place))), copied));
  value.select();
}
