// Compare page, /compare?runs=ID1,ID2[,...]: runs side by side, with their params, their
// metrics (latest values and the series overlaid on shared charts) and the artifact and plugin
// digests that differ.

import { segment } from "../api.js";
import { durationOf, formatDuration, formatNumber, formatTime, h, statusBadge } from "../format.js";
import {
  ensureGraphStyles,
  errorText,
  finish,
  isAbort,
  mapLimited,
  pageLink,
  shortUuid,
  showError,
} from "./graph-helpers.js";

/** Maximum number of runs compared at once; each adds a column and a series to every chart. */
const MAX_RUNS = 10;

/** Points fetched per series: about twice the width of a chart in pixels. */
const POINTS_PER_SERIES = 1000;

/** Metric history requests in flight at once. */
const PARALLEL_REQUESTS = 6;

/** Renders the compare page into `root`. */
export async function render(root, route, ctx) {
  ensureGraphStyles();
  const page = h("section", { class: "ug-page compare-page" });
  root.replaceChildren(page);
  ctx.setTitle("Compare runs");
  page.append(h("h1", {}, "Compare runs"));

  try {
    await renderComparison(page, route.params.get("runs") ?? "", ctx);
  } catch (error) {
    if (isAbort(ctx, error)) {
      return;
    }
    showError(page, error);
  }
  finish(ctx, "compare");
}

/** Returns the distinct run ids of the `runs` query, in order. */
function parseIds(text) {
  const ids = text
    .split(",")
    .map((id) => id.trim())
    .filter(Boolean);
  return [...new Set(ids)];
}

async function renderComparison(page, text, ctx) {
  const ids = parseIds(text);
  if (ids.length < 2) {
    showError(
      page,
      `compare needs at least two run ids, got ${ids.length}: open ` +
        "/compare?runs=ID1,ID2 or select runs in the runs list and press Compare",
    );
    return;
  }
  if (ids.length > MAX_RUNS) {
    showError(
      page,
      `compare shows at most ${MAX_RUNS} runs, got ${ids.length}: ` + "select fewer runs",
    );
    return;
  }

  const { runs, failures } = await loadRuns(ids, ctx);
  if (failures.length) {
    const problems = failures.map(({ id, error }) => `run ${id}: ${errorText(error)}`);
    const outcome =
      runs.length < 2
        ? "fewer than two runs are left to compare: check the ids or go back to the runs list"
        : "the other runs are compared below";
    showError(
      page,
      `failed to load ${failures.length} of ${ids.length} runs ` +
        `(${problems.join("; ")}), so ${outcome}`,
    );
  }
  if (runs.length < 2) {
    return;
  }

  page.append(
    section("Runs", runsTable(runs)),
    section("Params", paramsTable(runs)),
    section("Artifact and plugin digests", digestsSection(runs)),
  );
  const metrics = h("div", { "data-testid": "compare-metrics" });
  page.append(section("Metrics", metrics));
  await renderMetrics(metrics, runs, ctx);
}

/** Loads each run's detail, keeping the ids that failed with their errors. */
async function loadRuns(ids, ctx) {
  const results = await Promise.all(
    ids.map(async (id) => {
      try {
        return {
          id,
          detail: await ctx.api.get(`/api/v1/runs/${segment(id)}`, {}, { signal: ctx.signal }),
        };
      } catch (error) {
        if (isAbort(ctx, error)) {
          throw error;
        }
        return { id, error };
      }
    }),
  );
  return {
    runs: results.filter((result) => result.detail).map((result) => result.detail),
    failures: results.filter((result) => result.error),
  };
}

function section(title, ...content) {
  return h("section", { class: "ug-section" }, h("h2", {}, title), ...content);
}

/** Returns the short name of a run for column headers and chart legends. */
function runName(run) {
  const name = run.run.name || run.pipeline?.name || "run";
  return `${name} (${shortUuid(run.run.id)})`;
}

function headerRow(first, runs) {
  return h(
    "tr",
    {},
    h("th", {}, first),
    runs.map((run) => h("th", {}, runName(run))),
  );
}

function runsTable(runs) {
  const rows = runs.map((run) =>
    h(
      "tr",
      { "data-run-id": run.run.id },
      h("td", {}, pageLink(`/runs/${segment(run.run.id)}`, runName(run))),
      h("td", {}, statusBadge(run.run.status)),
      h("td", {}, run.pipeline?.name ?? h("span", { class: "muted" }, "external")),
      h("td", {}, formatTime(run.run.started_at ?? run.run.created_at)),
      h("td", {}, formatDuration(durationOf(run.run))),
      h("td", {}, run.run.user),
    ),
  );
  return h(
    "table",
    { class: "ug-table", "data-testid": "compare-runs" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ["Run", "Status", "Pipeline", "Started", "Duration", "User"].map((title) =>
          h("th", {}, title),
        ),
      ),
    ),
    h("tbody", {}, rows),
  );
}

/** Returns whether the values differ; a value missing from one run counts as a difference. */
function differ(values) {
  return values.some((value) => value !== values[0]);
}

/** Builds a row of values per run, marked as differing when they are not all equal. */
function compareRow(attribute, key, label, values, show = (value) => value) {
  const differs = differ(values);
  return h(
    "tr",
    { [attribute]: key, class: differs ? "diff" : null, "data-differs": String(differs) },
    h("th", { scope: "row" }, label),
    values.map((value) =>
      value === undefined ? h("td", { class: "missing" }, "not set") : h("td", {}, show(value)),
    ),
  );
}

/** Lists every param of any run, one column per run, with a filter for differing rows. */
function paramsTable(runs) {
  const keys = [...new Set(runs.flatMap((run) => Object.keys(run.params)))].sort();
  if (!keys.length) {
    return h(
      "p",
      { class: "muted", "data-testid": "compare-params" },
      "None of these runs has params.",
    );
  }
  const rows = keys.map((key) =>
    compareRow(
      "data-param",
      key,
      key,
      runs.map((run) => run.params[key]),
    ),
  );
  const table = h(
    "table",
    { class: "ug-table", "data-testid": "compare-params" },
    h("thead", {}, headerRow("Param", runs)),
    h("tbody", {}, rows),
  );
  const differing = rows.filter((row) => row.dataset.differs === "true").length;
  return h(
    "div",
    {},
    onlyDifferences(table, `${differing} of ${keys.length} params differ`),
    table,
  );
}

/** Returns a checkbox that hides the rows of `table` whose values are all equal. */
function onlyDifferences(table, summary) {
  const box = h("input", { type: "checkbox", "data-testid": "only-differences" });
  box.addEventListener("change", () => {
    for (const row of table.querySelectorAll("tbody tr[data-differs=false]")) {
      row.hidden = box.checked;
    }
  });
  return h(
    "div",
    { class: "ug-controls" },
    h("span", { class: "muted" }, summary),
    h("label", {}, box, "show only differences"),
  );
}

/**
 * Collects the digests that identify what each run executed and produced: the pipeline
 * definition, each step's plugin, each step output and each run-level output. Returns one entry
 * per name with the value of each run, in first-seen order.
 */
function digestEntries(runs) {
  const entries = new Map();
  const put = (name, kind, index, value) => {
    if (!entries.has(name)) {
      entries.set(name, { name, kind, values: new Array(runs.length).fill(undefined) });
    }
    entries.get(name).values[index] = value;
  };
  runs.forEach((run, index) => {
    if (run.pipeline) {
      put("pipeline definition", "pipeline", index, run.pipeline.digest);
    }
    for (const step of run.steps) {
      if (step.plugin?.digest) {
        put(`plugin of step ${step.name}`, "plugin", index, step.plugin.digest);
      }
      for (const output of step.outputs) {
        put(`${step.name}.${output.name}`, "artifact", index, output.digest);
      }
    }
    for (const link of run.artifacts) {
      if (!link.step_run_id && link.direction === "output") {
        put(link.name, "artifact", index, link.digest);
      }
    }
  });
  return [...entries.values()];
}

/** Lists the digests that differ between the runs, and the identical ones folded away. */
function digestsSection(runs) {
  const entries = digestEntries(runs);
  const rowOf = (entry) =>
    compareRow(
      "data-digest",
      entry.name,
      h("span", {}, entry.name, " ", h("span", { class: "ug-badge" }, entry.kind)),
      entry.values,
      digestCell,
    );
  const differing = entries.filter((entry) => differ(entry.values));
  const same = entries.filter((entry) => !differ(entry.values));
  const table = (rows, testId) =>
    h(
      "table",
      { class: "ug-table", "data-testid": testId },
      h("thead", {}, headerRow("Digest of", runs)),
      h("tbody", {}, rows.map(rowOf)),
    );

  const differingPart = differing.length
    ? table(differing, "compare-digests")
    : h(
        "p",
        { class: "muted", "data-testid": "compare-digests" },
        "The runs used the same pipeline definition and plugins and produced the same artifacts.",
      );
  const samePart = same.length
    ? h(
        "details",
        {},
        h("summary", {}, `${same.length} identical digests`),
        table(same, "compare-digests-same"),
      )
    : null;
  return h("div", {}, differingPart, samePart);
}

function digestCell(digest) {
  return h("code", { title: digest }, digest.slice(0, 12));
}

/** Shows the latest value of each metric side by side, then one chart per metric key. */
async function renderMetrics(container, runs, ctx) {
  const keys = [...new Set(runs.flatMap((run) => run.metrics.map((metric) => metric.key)))].sort();
  if (!keys.length) {
    container.append(h("p", { class: "muted" }, "None of these runs logged metrics."));
    return;
  }
  const latest = runs.map(
    (run) => new Map(run.metrics.map((metric) => [metric.key, metric.value])),
  );
  const rows = keys.map((key) =>
    compareRow(
      "data-metric",
      key,
      key,
      latest.map((values) => values.get(key)),
      formatNumber,
    ),
  );
  container.append(
    h(
      "table",
      { class: "ug-table", "data-testid": "compare-metric-values" },
      h("thead", {}, headerRow("Latest value", runs)),
      h("tbody", {}, rows),
    ),
  );

  const chartModule = await loadChartModule(container);
  if (!chartModule) {
    return;
  }
  const loaded = await mapLimited(keys, PARALLEL_REQUESTS, (key) => loadKey(key, runs, ctx));
  const controllers = [];
  const charts = h("div", { class: "ug-charts" });
  container.append(xModeControl(controllers), charts);

  // A metric with one value per run is compared in the table, so its chart is folded away.
  const charted = loaded.filter(
    (metric) => metric.error || metric.series.some((line) => line.total > 1),
  );
  const single = loaded.filter((metric) => !charted.includes(metric));
  for (const metric of charted) {
    drawKey(charts, metric, chartModule, ctx, controllers);
  }
  if (single.length) {
    container.append(foldedCharts(single, chartModule, ctx, controllers));
  }
}

/** Returns a folded section that draws the charts of `loaded` when it is first opened. */
function foldedCharts(loaded, chartModule, ctx, controllers) {
  const charts = h("div", { class: "ug-charts" });
  const folded = h(
    "details",
    { "data-testid": "single-value-metrics" },
    h("summary", {}, `charts of ${loaded.length} metrics with one value per run`),
    charts,
  );
  folded.addEventListener("toggle", () => {
    if (folded.open && !charts.childElementCount) {
      for (const metric of loaded) {
        drawKey(charts, metric, chartModule, ctx, controllers);
      }
    }
  });
  return folded;
}

/** Returns a selector of the x axis of every chart: step or time. */
function xModeControl(controllers) {
  const select = h(
    "select",
    { "data-testid": "x-mode" },
    h("option", { value: "step" }, "step"),
    h("option", { value: "time" }, "time"),
  );
  select.addEventListener("change", () => {
    for (const controller of controllers) {
      controller.setXMode(select.value);
    }
  });
  return h(
    "div",
    { class: "ug-controls" },
    h("label", {}, "x axis", select),
    h("span", { class: "muted" }, "drag across a chart to zoom into a range at full resolution"),
  );
}

/** Imports the chart component, showing why in `container` when it fails. */
async function loadChartModule(container) {
  try {
    const module = await import("../components/chart.js");
    if (typeof module.renderMetricChart !== "function") {
      throw new Error("components/chart.js does not export renderMetricChart");
    }
    return module;
  } catch (error) {
    container.append(
      h(
        "p",
        { class: "error" },
        `the chart component failed to load, so no chart is drawn: ${errorText(error)}`,
      ),
    );
    return null;
  }
}

/** Fetches the series of `key` of the runs that logged it, optionally within a step range. */
async function fetchSeries(key, runs, ctx, range = {}) {
  const histories = await Promise.all(
    runs.map((run) =>
      ctx.api.get(
        `/api/v1/runs/${segment(run.run.id)}/metrics/${segment(key)}/history`,
        { max_points: POINTS_PER_SERIES, ...range },
        { signal: ctx.signal },
      ),
    ),
  );
  return histories.map((history, index) => ({
    label: runName(runs[index]),
    points: history.points,
    total: history.total_points,
  }));
}

/** Loads the series of `key` of the runs that logged it, or the error that stopped the load. */
async function loadKey(key, runs, ctx) {
  const logged = runs.filter((run) => run.metrics.some((metric) => metric.key === key));
  try {
    return { key, logged, series: await fetchSeries(key, logged, ctx) };
  } catch (error) {
    if (isAbort(ctx, error)) {
      throw error;
    }
    return { key, logged, error };
  }
}

/** Adds to `parent` a chart of the loaded series of one key, all runs overlaid. */
function drawKey(parent, { key, logged, series, error }, chartModule, ctx, controllers) {
  const slot = h("div", { class: "ug-chart", "data-testid": "metric-chart", "data-metric": key });
  parent.append(slot);
  if (error) {
    slot.append(
      h("h3", {}, key),
      h("p", { class: "error" }, `failed to load the series: ${errorText(error)}`),
    );
    return;
  }
  slot.dataset.totalPoints = String(series.reduce((sum, line) => sum + line.total, 0));
  const controller = chartModule.renderMetricChart(slot, {
    title: key,
    series,
    // Zooming by step re-reads the selected range; in time mode the drawn points are kept.
    onZoom: async ({ min, max, xMode }) =>
      xMode === "step"
        ? fetchSeries(key, logged, ctx, { start_step: Math.floor(min), end_step: Math.ceil(max) })
        : null,
  });
  controllers.push(controller);
}
