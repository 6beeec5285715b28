// The runs page: one page of GET /api/v1/runs at a time, filtered, sorted and paged by the
// server, so a store of many thousands of runs stays fast. The filter, the sort, the added
// metric and param columns and the page live in the URL, so a reload or a shared link shows
// the same table.

import { ApiError } from "../api.js";
import {
  durationOf,
  formatDuration,
  formatNumber,
  formatTime,
  h,
  isoTime,
  shortId,
  statusBadge,
} from "../format.js";

/** Runs per page when the URL names no `page_size`. */
const DEFAULT_PAGE_SIZE = 50;

/** Fixed columns: the sort key in the URL, the API's order_by term, the header and the cell. */
const FIXED_COLUMNS = [
  {
    key: "start_time",
    orderBy: "started_at",
    label: "Start",
    cell: (run) => h("td", { title: isoTime(run.started_at ?? run.created_at) },
      formatTime(run.started_at ?? run.created_at)),
  },
  {
    key: "duration",
    orderBy: "duration",
    label: "Duration",
    cell: (run) => h("td", { class: "num" }, formatDuration(durationOf(run))),
  },
  { key: "status", orderBy: "status", label: "Status", cell: (run) => h("td", {}, statusBadge(run.status)) },
  { key: "pipeline", orderBy: "pipeline", label: "Pipeline", cell: (run) => h("td", {}, run.pipeline ?? "–") },
  { key: "user", orderBy: "user", label: "User", cell: (run) => h("td", {}, run.user) },
];

/** Ids of the runs ticked for comparison; kept across pages and sorts of this tab. */
const selected = new Set();

/** Tokens of the pages before the current one, by the query they belong to. */
const previousTokens = new Map();

/** Renders the runs page into `root`. */
export async function render(root, route, ctx) {
  ctx.setTitle("Runs");
  const view = viewOf(route.params);
  const layout = buildLayout(view, ctx);
  root.replaceChildren(layout.element);

  let page;
  try {
    page = await ctx.api.get("/api/v1/runs", apiQuery(view), { signal: ctx.signal });
  } catch (error) {
    if (!(error instanceof ApiError) || error.status === 401) throw error;
    layout.showError(error.message);
    document.body.dataset.ready = "runs";
    return;
  }
  layout.fill(page);
  document.body.dataset.ready = "runs";
}

/** Reads the table state from the URL query. */
function viewOf(params) {
  const sort = params.get("sort") || "";
  const columns = (params.get("columns") || "")
    .split(",")
    .map((column) => column.trim())
    .filter((column) => isColumnKey(column));
  const size = Number.parseInt(params.get("page_size") || "", 10);
  return {
    filter: params.get("filter") || "",
    sort,
    dir: params.get("dir") === "asc" ? "asc" : "desc",
    columns: [...new Set(columns)],
    pageToken: params.get("page_token") || "",
    pageSize: Number.isFinite(size) && size >= 1 && size <= 1000 ? size : DEFAULT_PAGE_SIZE,
  };
}

/** Whether `key` names a metric, param or tag column such as `metrics.test_rmse`. */
function isColumnKey(key) {
  return /^(metrics|params|tags)\..+/.test(key);
}

/** Writes the table state back into a URL. */
function urlOf(view) {
  const params = new URLSearchParams();
  if (view.filter) params.set("filter", view.filter);
  if (view.sort) {
    params.set("sort", view.sort);
    params.set("dir", view.dir);
  }
  if (view.columns.length) params.set("columns", view.columns.join(","));
  if (view.pageSize !== DEFAULT_PAGE_SIZE) params.set("page_size", String(view.pageSize));
  if (view.pageToken) params.set("page_token", view.pageToken);
  const text = params.toString();
  return text ? `/runs?${text}` : "/runs";
}

/** The query of GET /api/v1/runs for a view. */
function apiQuery(view) {
  return {
    filter: view.filter,
    order_by: view.sort ? `${orderTerm(view.sort)} ${view.dir.toUpperCase()}` : "",
    page_size: view.pageSize,
    page_token: view.pageToken,
  };
}

/** Returns the order_by term of a sort key, quoting metric, param and tag names. */
function orderTerm(sort) {
  const fixed = FIXED_COLUMNS.find((column) => column.key === sort);
  if (fixed) return fixed.orderBy;
  const dot = sort.indexOf(".");
  if (dot < 0) return sort;
  const prefix = sort.slice(0, dot);
  const name = sort.slice(dot + 1);
  return `${prefix}.\`${name.replaceAll("`", "``")}\``;
}

/** A key that identifies the filter, sort and size, so page tokens stay with their query. */
function queryKey(view) {
  return JSON.stringify([view.filter, view.sort, view.dir, view.pageSize]);
}

/** Builds the controls and the empty table; `fill` adds a page of runs. */
function buildLayout(view, ctx) {
  const go = (changes) => ctx.navigate(urlOf({ ...view, pageToken: "", ...changes }));
  const error = h("div", { class: "error-slot" });
  const filter = filterBox(view, go);
  const addColumn = addColumnBox(view, go, (message) => showError(message));
  const compare = h("button", {
    type: "button",
    "data-testid": "compare-selected",
    text: "Compare selected",
  });
  compare.addEventListener("click", () => {
    ctx.navigate(`/compare?runs=${[...selected].map(encodeURIComponent).join(",")}`);
  });
  const count = h("span", { class: "muted", "data-testid": "runs-count" });
  const table = h("table", { class: "runs", "data-testid": "runs-table" });
  const pager = h("div", { class: "pager" });
  const updateCompare = () => {
    compare.disabled = selected.size < 2;
    compare.textContent = selected.size ? `Compare selected (${selected.size})` : "Compare selected";
  };
  updateCompare();

  function showError(message) {
    error.replaceChildren(h("p", { class: "error", "data-testid": "error", role: "alert", text: message }));
  }

  const element = h(
    "section",
    { class: "runs-page" },
    h("div", { class: "page-head" }, h("h1", { text: "Runs" }), count),
    h("div", { class: "toolbar" }, filter, addColumn, compare),
    error,
    h("div", { class: "table-wrap" }, table),
    pager,
  );
  return {
    element,
    showError,
    fill(page) {
      table.replaceChildren(headerRow(view, go), body(page.items, view, updateCompare));
      count.textContent = countText(view, page);
      count.dataset.count = String(page.items.length);
      pager.replaceChildren(...pagerButtons(view, page, ctx));
    },
  };
}

function filterBox(view, go) {
  const input = h("input", {
    type: "search",
    "data-testid": "filter",
    class: "filter",
    value: view.filter,
    placeholder: "filter: metrics.test_rmse < 0.7 and params.alpha = '0.1' and status = 'succeeded'",
    "aria-label": "filter",
    spellcheck: "false",
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") go({ filter: input.value.trim() });
  });
  return input;
}

function addColumnBox(view, go, showError) {
  const input = h("input", {
    type: "text",
    "data-testid": "add-column",
    class: "add-column",
    placeholder: "add column: metrics.KEY or params.KEY",
    "aria-label": "add a metric or param column",
    list: "column-suggestions",
    spellcheck: "false",
  });
  input.addEventListener("keydown", (event) => {
    if (event.key !== "Enter") return;
    const key = input.value.trim();
    if (!isColumnKey(key)) {
      showError(`invalid column \`${key}\`: write metrics.KEY, params.KEY or tags.KEY, such as metrics.test_rmse`);
      return;
    }
    if (view.columns.includes(key)) return;
    go({ columns: [...view.columns, key] });
  });
  return h("span", {}, input, h("datalist", { id: "column-suggestions" }));
}

function headerRow(view, go) {
  const sortable = (key, label, extra = null) => {
    const active = view.sort === key;
    let ariaSort = "none";
    if (active) {
      ariaSort = view.dir === "asc" ? "ascending" : "descending";
    }
    const th = h("th", {
      "data-sort": key,
      class: active ? `sortable sorted-${view.dir}` : "sortable",
      "aria-sort": ariaSort,
      title: `sort by ${key}`,
      tabindex: "0",
    }, label, extra);
    const toggle = () => {
      let dir = defaultDir(key);
      if (active) {
        dir = view.dir === "desc" ? "asc" : "desc";
      }
      go({ sort: key, dir });
    };
    th.addEventListener("click", (event) => {
      if (event.target.closest("button")) return;
      toggle();
    });
    th.addEventListener("keydown", (event) => {
      if (event.key === "Enter") toggle();
    });
    return th;
  };
  const cells = [h("th", { class: "select" }), h("th", { text: "Run" })];
  for (const column of FIXED_COLUMNS) cells.push(sortable(column.key, column.label));
  for (const key of view.columns) {
    const remove = h("button", { type: "button", class: "link remove", title: `remove ${key}`, text: "×" });
    remove.addEventListener("click", () => go({ columns: view.columns.filter((c) => c !== key) }));
    cells.push(sortable(key, key, remove));
  }
  return h("thead", {}, h("tr", {}, cells));
}

/** Time columns start newest first; names and values start ascending. */
function defaultDir(key) {
  return key === "start_time" || key === "duration" ? "desc" : "asc";
}

function body(runs, view, updateCompare) {
  const tbody = h("tbody");
  if (!runs.length) {
    const span = 2 + FIXED_COLUMNS.length + view.columns.length;
    tbody.append(h("tr", {}, h("td", { colspan: String(span), class: "empty", text: "no runs match" })));
    return tbody;
  }
  const suggestions = new Set();
  for (const run of runs) {
    tbody.append(runRow(run, view, updateCompare));
    for (const key of Object.keys(run.metrics || {})) suggestions.add(`metrics.${key}`);
    for (const key of Object.keys(run.params || {})) suggestions.add(`params.${key}`);
  }
  const list = document.getElementById("column-suggestions");
  list?.replaceChildren(...[...suggestions].sort().map((value) => h("option", { value })));
  return tbody;
}

function runRow(run, view, updateCompare) {
  const box = h("input", {
    type: "checkbox",
    "data-testid": "select-run",
    "aria-label": `select run ${run.id}`,
    value: run.id,
  });
  box.checked = selected.has(run.id);
  box.addEventListener("change", () => {
    if (box.checked) selected.add(run.id);
    else selected.delete(run.id);
    updateCompare();
  });
  const name = h(
    "td",
    { class: "run-name" },
    h("a", { href: `/runs/${encodeURIComponent(run.id)}`, text: run.name || shortId(run.id) }),
    h("div", { class: "muted mono run-id", text: run.id }),
  );
  const cells = [h("td", { class: "select" }, box), name];
  for (const column of FIXED_COLUMNS) cells.push(column.cell(run));
  for (const key of view.columns) cells.push(extraCell(run, key));
  return h("tr", { "data-run-id": run.id, "data-status": run.status }, cells);
}

function extraCell(run, key) {
  const dot = key.indexOf(".");
  const prefix = key.slice(0, dot);
  const name = key.slice(dot + 1);
  const values = run[prefix] || {};
  if (!(name in values)) return h("td", { class: "muted", text: "–" });
  const value = values[name];
  if (prefix === "metrics") return h("td", { class: "num", title: String(value), text: formatNumber(value) });
  return h("td", { text: value });
}

function countText(view, page) {
  const stack = previousTokens.get(queryKey(view)) || [];
  const first = stack.length * view.pageSize + 1;
  const shown = page.items.length;
  if (!shown) return "no runs";
  if (first === 1 && !page.next_page_token) return shown === 1 ? "1 run" : `${shown} runs`;
  const range = `runs ${first}–${first + shown - 1}`;
  return page.next_page_token ? `${range}, more on the next page` : range;
}

function pagerButtons(view, page, ctx) {
  const key = queryKey(view);
  const stack = previousTokens.get(key) || [];
  // After a reload the earlier tokens are gone; the first page is still one step away.
  const canGoBack = stack.length > 0 || Boolean(view.pageToken);
  const prev = h("button", { type: "button", "data-testid": "prev-page", text: "← Previous" });
  prev.disabled = !canGoBack;
  prev.addEventListener("click", () => {
    const earlier = stack.slice(0, -1);
    const token = stack.length ? stack[stack.length - 1] : "";
    previousTokens.set(key, earlier);
    ctx.navigate(urlOf({ ...view, pageToken: token }));
  });
  const next = h("button", { type: "button", "data-testid": "next-page", text: "Next →" });
  next.disabled = !page.next_page_token;
  next.addEventListener("click", () => {
    previousTokens.set(key, [...stack, view.pageToken]);
    ctx.navigate(urlOf({ ...view, pageToken: page.next_page_token }));
  });
  return [prev, next];
}
