// The Admin UI's entry: sign-in state, the hash router, the top bar.
import { api, clearKey, getKey, onUnauthorized } from "./api.js";
import { replace } from "./dom.js";
import * as notify from "./notify.js";

// Each page: render(main, params, context) -> cleanup function (or nothing).
const ROUTES = [
  [/^\/?$/, "dashboard", () => import("./pages/dashboard.js")],
  [/^\/dashboard$/, "dashboard", () => import("./pages/dashboard.js")],
  [/^\/endpoints$/, "endpoints", () => import("./pages/endpoints.js")],
  [/^\/endpoints\/new$/, "endpoints", () => import("./pages/endpoint.js"), () => ({ id: null })],
  [/^\/endpoints\/([A-Za-z0-9_-]+)$/, "endpoints", () => import("./pages/endpoint.js"), (m) => ({ id: m[1] })],
  [/^\/services$/, "services", () => import("./pages/services.js")],
  [/^\/domains$/, "domains", () => import("./pages/domains.js")],
  [/^\/consumers$/, "consumers", () => import("./pages/consumers.js")],
  [/^\/import$/, "import", () => import("./pages/imports.js")],
  [/^\/keys$/, "keys", () => import("./pages/keys.js")],
];

const main = document.getElementById("main");
let cleanup = null;
let generation = 0;
// leaveGuard: set by a page with unsaved changes; () -> a reason not to leave, or null.
export const context = { key: null, scope: null, leaveGuard: null };

function route() {
  const hash = location.hash.replace(/^#/, "");
  const [path, query] = hash.split("?");
  return { path: path || "/", query: new URLSearchParams(query || "") };
}

async function show() {
  const mine = ++generation;
  context.leaveGuard = null;
  if (cleanup) {
    try {
      cleanup();
    } catch (error) {
      console.error(error);
    }
    cleanup = null;
  }
  if (!getKey()) {
    showSignedOut();
    const page = await import("./pages/signin.js");
    if (mine !== generation) return;
    cleanup = page.render(main, {}, context) || null;
    return;
  }
  showSignedIn();
  const { path, query } = route();
  let found = null;
  for (const [pattern, name, load, params] of ROUTES) {
    const m = pattern.exec(path);
    if (m) {
      found = { name, load, params: Object.assign({ query }, params ? params(m) : {}) };
      break;
    }
  }
  for (const link of document.querySelectorAll("#nav a")) {
    if (found && link.dataset.page === found.name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (!found) {
    replace(main, notFound(path));
    return;
  }
  replace(main);
  let page;
  try {
    page = await found.load();
  } catch (error) {
    notify.error(error, "The page could not be loaded:");
    return;
  }
  if (mine !== generation) return;
  try {
    cleanup = page.render(main, found.params, context) || null;
  } catch (error) {
    notify.error(error, "The page failed:");
  }
}

function notFound(path) {
  const p = document.createElement("p");
  p.className = "panel";
  p.append("There is no page ", Object.assign(document.createElement("code"), { textContent: path }), ". ");
  const a = Object.assign(document.createElement("a"), { href: "#/dashboard", textContent: "Go to the dashboard" });
  p.append(a, ".");
  return p;
}

function showSignedOut() {
  document.getElementById("nav").hidden = true;
  document.getElementById("session").hidden = true;
}

function showSignedIn() {
  document.getElementById("nav").hidden = false;
  document.getElementById("session").hidden = false;
  if (!context.key || context.key !== getKey()) {
    context.key = getKey();
    whoAmI();
  }
}

async function whoAmI() {
  const who = document.getElementById("who");
  try {
    const data = await api("GET", "/keys?limit=500");
    const me = data.items.find((k) => k.current);
    if (me) {
      context.scope = me.scope;
      who.textContent = `${me.name} (${me.scope})`;
      who.title = `Signed in with the API key '${me.name}', scope ${me.scope}`;
    }
  } catch {
    who.textContent = "";
  }
}

export function signOut(message) {
  clearKey();
  context.key = null;
  context.scope = null;
  document.getElementById("who").textContent = "";
  notify.clear();
  if (message) notify.error(message, "Signed out:");
  if (location.hash && location.hash !== "#/") {
    // Come back here after signing in again.
    sessionStorage.setItem("edgegw.return", location.hash);
  }
  show();
}

onUnauthorized((error) => signOut(`${error.message}. Sign in again with a valid API key.`));

document.getElementById("signout").addEventListener("click", () => {
  sessionStorage.removeItem("edgegw.return");
  signOut();
});
document.querySelector(".skip-link").addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});
window.addEventListener("hashchange", async (event) => {
  const reason = context.leaveGuard && context.leaveGuard();
  if (reason) {
    // Stay (the address too) unless the user says to leave.
    const target = location.hash;
    history.replaceState(null, "", new URL(event.oldURL).hash || "#/");
    if (!(await notify.confirm(reason, "Leave without saving", true))) return;
    context.leaveGuard = null;
    location.hash = target;
    return;
  }
  notify.clear();
  show();
});
window.addEventListener("unhandledrejection", (event) => {
  notify.error(event.reason || "unknown error", "Unexpected error:");
});
window.addEventListener("edgegw:signed-in", () => {
  const back = sessionStorage.getItem("edgegw.return");
  sessionStorage.removeItem("edgegw.return");
  if (back && back !== location.hash) location.hash = back;
  else show();
});

document.getElementById("boot")?.remove();
show();
