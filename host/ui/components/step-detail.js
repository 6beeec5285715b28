// The panel of one step run, opened from the timeline: status, plugin, times, params, inputs
// and outputs, the latest value of each metric it logged, and its log lines.

import {
  durationOf,
  fill,
  formatDuration,
  formatNumber,
  formatTime,
  h,
  shortId,
  statusBadge,
} from "../format.js";

/** Log lines fetched per request. */
const LOG_PAGE = 1000;

/** Fills `panel` with step run `step` of run `runId` and loads its metrics and log. */
export async function renderStepDetail(panel, step, runId, api) {
  const metrics = h("div", { class: "step-metrics", text: "loading metrics…" });
  const log = h("div", { class: "step-log", text: "loading log…" });
  const close = h("button", { type: "button", class: "link", text: "close" });
  close.addEventListener("click", () => {
    panel.hidden = true;
    panel.replaceChildren();
  });
  panel.hidden = false;
  panel.dataset.step = step.name;
  panel.dataset.stepRunId = step.id;
  fill(
    panel,
    h("div", { class: "panel-head" }, h("h3", { text: `Step ${step.name}` }), statusBadge(step.status), close),
    facts(step),
    step.error ? h("p", { class: "error", text: step.error }) : null,
    h("h4", { text: "Params" }),
    paramsTable(step.params),
    h("h4", { text: "Inputs and outputs" }),
    linksTable(step),
    h("h4", { text: "Metrics" }),
    metrics,
    h("h4", { text: "Log" }),
    log,
  );
  const base = `/api/v1/runs/${encodeURIComponent(runId)}/steps/${encodeURIComponent(step.id)}`;
  await Promise.all([loadMetrics(metrics, base, api), loadLog(log, base, api)]);
}

function facts(step) {
  const plugin = step.plugin
    ? `${step.plugin.name}${step.plugin.version ? `@${step.plugin.version}` : ""}`
    : "–";
  const rows = [
    ["Step run", h("span", { class: "mono", text: step.id })],
    ["Plugin", plugin],
    ["Plugin digest", h("span", { class: "mono", text: step.plugin?.digest ?? "–" })],
    ["Executor", step.executor],
    ["Attempts", String(step.attempts)],
    ["Started", formatTime(step.started_at)],
    ["Ended", formatTime(step.ended_at)],
    ["Duration", formatDuration(durationOf(step))],
    step.cached_from ? ["Cached from", h("span", { class: "mono", text: step.cached_from })] : null,
  ].filter(Boolean);
  return h("dl", { class: "facts" }, rows.flatMap(([term, value]) => [h("dt", { text: term }), h("dd", {}, value)]));
}

/** Characters of a param value shown before the rest is folded into an expandable cell. */
const SHORT_VALUE_CHARS = 200;

/** Renders a JSON object of params as a key/value table; long values fold behind a summary. */
export function paramsTable(params) {
  const entries = Object.entries(params || {});
  if (!entries.length) return h("p", { class: "muted", text: "none" });
  return h(
    "table",
    { class: "kv" },
    h("tbody", {}, entries.map(([key, value]) => h(
      "tr",
      { "data-key": key },
      h("th", { title: key, text: key }),
      h("td", { class: "mono" }, valueCell(typeof value === "string" ? value : JSON.stringify(value))),
    ))),
  );
}

/** Shows a short value as text, and a long one as its start with the whole value on expand. */
function valueCell(text) {
  if (text.length <= SHORT_VALUE_CHARS) return text;
  return h(
    "details",
    { class: "long-value" },
    h("summary", { text: `${text.slice(0, SHORT_VALUE_CHARS)}… (${text.length} characters)` }),
    h("pre", { text }),
  );
}

function linksTable(step) {
  const links = [...(step.inputs || []), ...(step.outputs || [])];
  if (!links.length) return h("p", { class: "muted", text: "none" });
  return h(
    "table",
    { class: "kv" },
    h("tbody", {}, links.map((link) => h(
      "tr",
      {},
      h("td", { text: link.direction }),
      h("td", { class: "mono", text: link.name }),
      h("td", { class: "mono" }, h("a", { href: `/lineage?kind=artifact&id=${link.digest}`, text: shortId(link.digest) })),
    ))),
  );
}

async function loadMetrics(slot, base, api) {
  try {
    const body = await api.get(`${base}/metrics`);
    if (!body.items.length) {
      slot.replaceChildren(h("p", { class: "muted", text: "this step logged no metrics" }));
      return;
    }
    slot.replaceChildren(h(
      "table",
      { class: "kv" },
      h("thead", {}, h("tr", {}, ["Key", "Latest", "Step", "Points"].map((text) => h("th", { text })))),
      h("tbody", {}, body.items.map((metric) => h(
        "tr",
        { "data-metric": metric.key },
        h("th", { text: metric.key }),
        h("td", { class: "num", text: formatNumber(metric.value) }),
        h("td", { class: "num", text: String(metric.step) }),
        h("td", { class: "num", text: String(metric.points) }),
      ))),
    ));
  } catch (error) {
    slot.replaceChildren(h("p", { class: "error", text: `cannot load the step's metrics: ${error.message}` }));
  }
}

async function loadLog(slot, base, api) {
  try {
    const body = await api.get(`${base}/logs`, { limit: LOG_PAGE });
    if (!body.items.length) {
      slot.replaceChildren(h("p", { class: "muted", text: "this step logged nothing" }));
      return;
    }
    const lines = body.items.map((line) => h(
      "div",
      { class: `log-line level-${line.level}` },
      h("span", { class: "muted", text: formatTime(line.timestamp) }),
      " ",
      h("span", { class: "log-level", text: line.level.toUpperCase() }),
      " ",
      line.message,
      line.fields && Object.keys(line.fields).length ? h("span", { class: "muted", text: ` ${JSON.stringify(line.fields)}` }) : null,
    ));
    const more = body.next_after_seq !== null
      ? h("p", { class: "muted", text: `showing the first ${LOG_PAGE} lines; \`runledger runs logs\` prints all` })
      : null;
    fill(slot, h("pre", { class: "log" }, lines), more);
  } catch (error) {
    slot.replaceChildren(h("p", { class: "error", text: `cannot load the step's log: ${error.message}` }));
  }
}
