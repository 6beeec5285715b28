// The web UI's shell: client-side routing with the History API, the navigation bar with the
// caller's name and role, and the token form shown when the API returns 401.
//
// Each page module exports `render(root, route, ctx)`, where `route` is
// `{path, params, segments}` and `ctx` is `{api, navigate, role, setTitle, signal}`. A page sets
// `document.body.dataset.ready` to its name once its data is rendered; the shell deletes it
// when a navigation starts and sets it itself when a page fails to load or throws.

import { api, ApiError, getToken, onUnauthorized, setToken } from "./api.js";
import { h } from "./format.js";

/** Page modules by path pattern, with the name that `data-ready` takes on failure. */
const ROUTES = [
  { pattern: /^\/(runs)?$/, module: "./pages/runs.js", name: "runs" },
  { pattern: /^\/runs\/[^/]+$/, module: "./pages/run.js", name: "run" },
  { pattern: /^\/lineage$/, module: "./pages/lineage.js", name: "lineage" },
  { pattern: /^\/compare$/, module: "./pages/compare.js", name: "compare" },
  { pattern: /^\/models$/, module: "./pages/models.js", name: "models" },
  { pattern: /^\/models\/[^/]+$/, module: "./pages/models.js", name: "model" },
];

/** Roles from least to most capable; each includes the ones before it. */
const ROLES = ["viewer", "editor", "approver", "admin"];

const state = {
  whoami: null,
  controller: null,
  root: null,
};

/** Returns whether `role` includes `needed`. */
export function hasRole(role, needed) {
  return ROLES.indexOf(role) >= ROLES.indexOf(needed);
}

/** Navigates to `url` inside the app, adding a history entry unless `replace` is set. */
export function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  route();
}

function setTitle(text) {
  document.title = text ? `${text} · runledger` : "runledger";
}

function currentRoute() {
  const path = location.pathname.replace(/\/+$/, "") || "/";
  const segments = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { path, params: new URLSearchParams(location.search), segments };
}

/** Renders the page of the current URL. */
async function route() {
  delete document.body.dataset.ready;
  state.controller?.abort();
  const controller = new AbortController();
  state.controller = controller;
  const root = state.root;
  root.replaceChildren();
  markNav();

  const current = currentRoute();
  const match = ROUTES.find((candidate) => candidate.pattern.test(current.path));
  if (!match) {
    showPageError(root, "", `no page at ${current.path}: the UI has /runs and /models`);
    return;
  }
  const ctx = {
    api,
    navigate,
    role: state.whoami?.role ?? "viewer",
    whoami: state.whoami,
    hasRole: (needed) => hasRole(state.whoami?.role ?? "viewer", needed),
    setTitle,
    signal: controller.signal,
  };
  try {
    const page = await import(match.module);
    if (controller.signal.aborted) return;
    await page.render(root, current, ctx);
  } catch (error) {
    if (controller.signal.aborted || error.name === "AbortError") return;
    if (error instanceof ApiError && error.status === 401) return;
    console.error(error);
    const message =
      error instanceof ApiError ? error.message : `the ${match.name} page failed: ${error.message}`;
    showPageError(root, match.name, message);
  }
}

/** Shows an error in place of a page, and marks the page as ready so tests can wait for it. */
function showPageError(root, name, message) {
  root.append(h("p", { class: "error", "data-testid": "error", role: "alert", text: message }));
  document.body.dataset.ready = name || "error";
}

function markNav() {
  const first = location.pathname.split("/")[1] || "runs";
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("active", link.dataset.nav === first);
  }
}

/** Follows clicks on same-origin links inside the app without reloading the page. */
function interceptLinks(event) {
  if (event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const link = event.target.closest("a[href]");
  if (!link || link.target || link.hasAttribute("download")) return;
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith("/api/")) return;
  if (url.pathname.startsWith("/ui/")) return;
  event.preventDefault();
  navigate(url.pathname + url.search + url.hash);
}

/** Shows the caller's name and role in the navigation bar, with a sign-out link for tokens. */
function renderWhoami() {
  const slot = document.querySelector("[data-testid=whoami]");
  if (!slot) return;
  slot.replaceChildren();
  const who = state.whoami;
  if (!who) return;
  slot.dataset.role = who.role;
  slot.dataset.name = who.name;
  slot.append(h("span", { class: "who-name", text: who.name }), " ");
  slot.append(h("span", { class: "who-role", text: who.role }));
  if (getToken()) {
    const signOut = h("button", { type: "button", class: "link", text: "sign out" });
    signOut.addEventListener("click", () => {
      setToken(null);
      state.whoami = null;
      renderWhoami();
      showTokenForm(null);
    });
    slot.append(" ", signOut);
  }
}

/** Replaces the page with the token form; `error` is the 401 that led here, if any. */
function showTokenForm(error) {
  state.controller?.abort();
  delete document.body.dataset.ready;
  const root = state.root;
  const input = h("input", {
    name: "token",
    type: "password",
    autocomplete: "current-password",
    required: true,
    placeholder: "bearer token",
    "aria-label": "bearer token",
  });
  const form = h(
    "form",
    { class: "token-form card", "data-testid": "token-form" },
    h("h1", { text: "Sign in" }),
    h("p", {
      text:
        "This server needs a bearer token. Create one with `runledger tokens create --name NAME " +
        "--role viewer` and paste it here; it is kept for this browser tab only.",
    }),
    error && getToken() ? h("p", { class: "error", role: "alert", text: error.message }) : null,
    input,
    h("button", { type: "submit", text: "Sign in" }),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    setToken(input.value.trim());
    await start();
  });
  root.replaceChildren(form);
  input.focus();
}

/** Loads the caller, then renders the current page, or the token form on 401. */
async function start() {
  try {
    state.whoami = await api.get("/api/v1/whoami");
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return;
    state.whoami = null;
    console.error(error);
  }
  renderWhoami();
  await route();
}

function main() {
  state.root = document.getElementById("app");
  onUnauthorized((error) => {
    showTokenForm(error);
  });
  document.addEventListener("click", interceptLinks);
  window.addEventListener("popstate", () => route());
  start();
}

main();
