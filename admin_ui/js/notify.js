// Messages to the user: errors stay until closed, successes fade. And a
// confirmation dialog that is part of the page (no window.confirm).
import { h } from "./dom.js";

const MAX = 4;

function host() {
  return document.getElementById("notices");
}

function show(kind, title, message, timeout) {
  const box = host();
  const text = h("div", { class: "notice-text" }, title ? h("span", { class: "notice-title" }, title) : null, String(message));
  const close = h("button", { type: "button", class: "btn btn-small", "aria-label": "Dismiss" }, "×");
  const notice = h("div", { class: ["notice", "notice-" + kind], role: kind === "error" ? "alert" : "status", dataset: { kind, shown: String(Date.now()) } }, text, close);
  close.addEventListener("click", () => notice.remove());
  box.append(notice);
  while (box.children.length > MAX) box.firstElementChild.remove();
  if (timeout) setTimeout(() => notice.remove(), timeout);
  return notice;
}

/** Show an error: an ApiError's message, or any other error's. */
export function error(problem, title) {
  const message = problem && problem.message ? problem.message : String(problem);
  return show("error", title || "Error:", message, 0);
}

export function ok(message) {
  return show("ok", null, message, 4000);
}

/** Remove the notices of the page left (a new page starts clean; what led to it stays). */
export function clear() {
  const now = Date.now();
  for (const notice of [...host().children]) {
    if (now - Number(notice.dataset.shown || 0) > 1000) notice.remove();
  }
}

/** Ask: resolves true when the user confirms. */
export function confirm(message, confirmLabel = "OK", danger = false) {
  return new Promise((resolve) => {
    const yes = h("button", { type: "button", class: ["btn", danger ? "btn-danger" : "btn-primary"] }, confirmLabel);
    const no = h("button", { type: "button", class: "btn" }, "Cancel");
    const dialog = h("dialog", { class: "confirm-dialog", "aria-label": "Confirm" },
      h("p", { class: "dialog-text" }, message),
      h("div", { class: "btn-row" }, h("span", { class: "spacer" }), no, yes));
    let answer = false;
    yes.addEventListener("click", () => { answer = true; dialog.close(); });
    no.addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => { dialog.remove(); resolve(answer); });
    document.body.append(dialog);
    dialog.showModal();
    no.focus();
  });
}
