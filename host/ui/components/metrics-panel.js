// The metrics section of the run page. A series with fewer than CHART_MIN_POINTS points is a
// row of a sortable table of latest values; a longer series gets a chart (chart.js). Charts
// are drawn when they scroll near the viewport, at most `limit` at once with a "show more"
// button, and a filter box narrows both the table and the charts by metric key.
//
// DOM: each drawn chart is `[data-testid=metric-chart][data-metric=KEY]` with data-points and
// data-total-points; a chart slot not drawn yet has only data-metric. The table is
// `[data-testid=metric-table]` with one `tr[data-metric=KEY]` per single-value series.

import { segment } from "../api.js";
import { formatNumber, formatTime, h, isoTime, metricNumber, shortId } from "../format.js";

/** Points a series needs to be drawn as a chart; shorter series are table rows. */
const CHART_MIN_POINTS = 2;

/** Charts shown before "show more", so a run with many series stays quick to open. */
const CHART_PAGE = 24;

/** Charts drawn before the page reports ready; the rest wait until they scroll into view. */
const EAGER_CHARTS = 4;

/**
 * History requests in flight at once while counting the points of each series.
 * NOTE: the run detail carries no point count per key, so a run with 1,000 keys costs 1,000
 * small history requests (about 1.3 s against a debug build on a busy 2-core machine). A
 * count in the run detail would remove them.
 */
const PROBE_CONCURRENCY = 8;

/** Smallest max_points the history API accepts: enough to read a series' point count. */
const PROBE_POINTS = 4;

/** Points the server keeps per pixel of chart width: enough for min-max downsampling. */
const POINTS_PER_PIXEL = 2;

/** Largest max_points the history API accepts. */
const MAX_POINTS = 100_000;

/** Table columns: sort key, header text and the value each row sorts by. */
const COLUMNS = [
  ["key", "Metric", (metric) => metric.key],
  ["value", "Value", (metric) => metricNumber(metric.value)],
  ["step", "Step", (metric) => metric.step],
  ["time", "Time", (metric) => metric.timestamp],
];

/** The metrics section: table, charts and the state that polling updates. */
export class MetricsPanel {
  /** Builds the section inside `container`; `options` has runId, api, signal and stepNames(). */
  constructor(container, options) {
    this.container = container;
    this.options = options;
    this.xMode = "step";
    this.latest = [];
    this.totals = new Map();
    this.charts = new Map();
    this.filter = "";
    this.sort = { key: "key", descending: false };
    this.limit = CHART_PAGE;
    this.chartModule = null;
    this.observer = new IntersectionObserver((entries) => this.onVisible(entries), { rootMargin: "400px 0px" });
    this.filterInput = h("input", { type: "search", class: "metric-filter", placeholder: "filter metric keys", "aria-label": "filter metric keys", "data-testid": "metric-filter" });
    this.filterInput.addEventListener("input", () => this.onFilter());
    this.summary = h("span", { class: "muted", "data-testid": "metric-summary" });
    this.table = h("div", { class: "metric-table-wrap" });
    this.grid = h("div", { class: "charts" });
    this.more = h("button", { type: "button", "data-testid": "more-charts", hidden: true });
    this.more.addEventListener("click", () => this.showMore());
  }

  /** Sets the x axis of every drawn chart to "step" or "time". */
  setXMode(mode) {
    this.xMode = mode;
    for (const chart of this.charts.values()) chart.controller?.setXMode(mode);
  }

  /** Shows `latest` (the run's latest value per key); resolves once the first charts are drawn. */
  async render(latest) {
    if (!latest.length) {
      this.container.replaceChildren(h("p", { class: "muted", text: "this run logged no metrics" }));
      return;
    }
    const changed = this.changedKeys(latest);
    this.latest = latest;
    // A series only grows, so one that already has a chart needs no new count.
    await this.countPoints(changed.filter((key) => (this.totals.get(key) ?? 0) < CHART_MIN_POINTS));
    if (this.options.signal.aborted) return;

    if (!this.chartModule && !(await this.loadChartModule())) return;
    if (!this.container.contains(this.grid)) {
      const tools = h("div", { class: "toolbar" }, this.filterInput, this.summary);
      this.container.replaceChildren(tools, this.table, this.grid, this.more);
    }
    for (const key of changed) this.charts.get(key)?.element.removeAttribute("data-loaded");
    this.renderTable();
    await this.renderCharts();
  }

  /** Returns the keys that are new or whose latest value changed since the last render. */
  changedKeys(latest) {
    const before = new Map(this.latest.map((metric) => [metric.key, metric]));
    return latest
      .filter((metric) => {
        const old = before.get(metric.key);
        return !old || old.step !== metric.step || old.timestamp !== metric.timestamp || old.value !== metric.value;
      })
      .map((metric) => metric.key);
  }

  /** Reads the point count of each of `keys`, a few requests at a time. */
  async countPoints(keys) {
    const queue = [...keys];
    const worker = async () => {
      while (queue.length && !this.options.signal.aborted) {
        const key = queue.shift();
        try {
          const history = await this.history(key, { max_points: PROBE_POINTS });
          this.totals.set(key, history.total_points);
        } catch (error) {
          if (error.name === "AbortError") return;
          // A series whose count is unknown gets a chart slot, which shows the error.
          this.totals.set(key, CHART_MIN_POINTS);
        }
      }
    };
    await Promise.all(Array.from({ length: PROBE_CONCURRENCY }, worker));
  }

  async loadChartModule() {
    try {
      this.chartModule = await import("./chart.js");
      return true;
    } catch (error) {
      this.container.replaceChildren(h("p", { class: "error", "data-testid": "error", text: `cannot load the chart library: ${error.message}; run \`cargo xtask setup\` and rebuild runledger` }));
      return false;
    }
  }

  matches(metric) {
    return !this.filter || metric.key.toLowerCase().includes(this.filter);
  }

  isCharted(metric) {
    return (this.totals.get(metric.key) ?? 0) >= CHART_MIN_POINTS;
  }

  onFilter() {
    clearTimeout(this.filterTimer);
    this.filterTimer = setTimeout(() => {
      this.filter = this.filterInput.value.trim().toLowerCase();
      this.limit = CHART_PAGE;
      this.renderTable();
      this.renderCharts();
    }, 150);
  }

  showMore() {
    this.limit += CHART_PAGE;
    this.renderCharts();
  }

  /** Fills the table of single-value series that match the filter, in the chosen order. */
  renderTable() {
    const rows = this.latest.filter((metric) => !this.isCharted(metric) && this.matches(metric));
    const [, , valueOf] = COLUMNS.find(([key]) => key === this.sort.key);
    const direction = this.sort.descending ? -1 : 1;
    rows.sort((a, b) => direction * compareValues(valueOf(a), valueOf(b)));
    if (!rows.length) {
      this.table.replaceChildren();
      return;
    }
    const head = h("tr", {}, COLUMNS.map(([key, text]) => this.header(key, text)));
    const table = h(
      "table",
      { class: "metric-table", "data-testid": "metric-table" },
      h("thead", {}, head),
      h("tbody", {}, rows.map((metric) => this.row(metric))),
    );
    this.table.replaceChildren(table);
  }

  header(key, text) {
    const sorted = this.sort.key === key;
    let order = "none";
    let className = "sortable";
    if (sorted) {
      order = this.sort.descending ? "descending" : "ascending";
      className += this.sort.descending ? " sorted-desc" : " sorted-asc";
    }
    const cell = h("th", { class: className, "data-sort": key, "aria-sort": order, tabindex: "0", text });
    const toggle = () => {
      this.sort = { key, descending: sorted ? !this.sort.descending : false };
      this.renderTable();
    };
    cell.addEventListener("click", toggle);
    cell.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") toggle();
    });
    return cell;
  }

  row(metric) {
    return h(
      "tr",
      { "data-metric": metric.key },
      h("td", { class: "mono metric-key", title: metric.key, text: metric.key }),
      h("td", { class: "num", title: String(metric.value), text: formatNumber(metric.value) }),
      h("td", { class: "num", text: String(metric.step) }),
      h("td", { title: isoTime(metric.timestamp), text: formatTime(metric.timestamp) }),
    );
  }

  /** Lays out the chart slots that match the filter, up to `limit`, and draws the first few. */
  async renderCharts() {
    const keys = this.latest.filter((metric) => this.isCharted(metric) && this.matches(metric)).map((metric) => metric.key);
    const shown = keys.slice(0, this.limit);
    this.grid.replaceChildren(...shown.map((key) => this.slot(key).element));
    this.updateSummary(keys.length, shown.length);

    const eager = [];
    for (const [index, key] of shown.entries()) {
      const chart = this.charts.get(key);
      if (chart.element.dataset.loaded) continue;
      if (index < EAGER_CHARTS) eager.push(this.loadChart(key));
      else this.observer.observe(chart.element);
    }
    await Promise.all(eager);
  }

  updateSummary(charted, shown) {
    const tableRows = this.latest.filter((metric) => !this.isCharted(metric) && this.matches(metric)).length;
    this.summary.textContent = `${tableRows} single values · ${shown} of ${charted} charts`;
    const remaining = charted - shown;
    this.more.hidden = remaining <= 0;
    this.more.textContent = `show ${Math.min(remaining, CHART_PAGE)} more charts (${remaining} hidden)`;
  }

  slot(key) {
    if (!this.charts.has(key)) {
      const element = h("div", { class: "chart card-inner", "data-metric": key }, h("strong", { class: "chart-title", text: key }));
      this.charts.set(key, { element, controller: null });
    }
    return this.charts.get(key);
  }

  onVisible(entries) {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      this.observer.unobserve(entry.target);
      this.loadChart(entry.target.dataset.metric);
    }
  }

  /** Reads the series of `key` at the chart's resolution and draws or redraws it. */
  async loadChart(key) {
    const chart = this.charts.get(key);
    chart.element.dataset.loaded = "true";
    const maxPoints = this.maxPoints(chart.element);
    try {
      const history = await this.history(key, { max_points: maxPoints });
      chart.element.dataset.totalPoints = String(history.total_points);
      chart.element.dataset.downsampled = String(history.downsampled);
      const series = this.seriesOf(history.points);
      if (chart.controller) {
        chart.controller.setSeries(series);
        return;
      }
      chart.controller = this.chartModule.renderMetricChart(chart.element, {
        title: key,
        series,
        xMode: this.xMode,
        onZoom: (range) => this.zoom(key, history, range, maxPoints),
      });
    } catch (error) {
      if (error.name === "AbortError") return;
      chart.element.dataset.points = "0";
      chart.element.replaceChildren(h("strong", { class: "chart-title", text: key }), h("p", { class: "error", text: `cannot load ${key}: ${error.message}` }));
    }
    chart.element.dataset.testid = "metric-chart";
  }

  maxPoints(element) {
    const width = element.clientWidth || this.grid.clientWidth || 800;
    return Math.min(Math.max(Math.round(width * POINTS_PER_PIXEL), 200), MAX_POINTS);
  }

  history(key, query) {
    const path = `/api/v1/runs/${segment(this.options.runId)}/metrics/${segment(key)}/history`;
    return this.options.api.get(path, query, { signal: this.options.signal });
  }

  /** Re-reads the zoomed range at full resolution when the drawn series was downsampled. */
  async zoom(key, history, { min, max, xMode }, maxPoints) {
    if (!history.downsampled) return null;
    let startStep = Math.floor(min);
    let endStep = Math.ceil(max);
    if (xMode === "time") {
      // The API selects ranges by step, so the time range maps to the steps drawn inside it.
      // NOTE: with a downsampled series the first and last steps inside the range are known
      // only to the resolution of the drawn points.
      const inside = history.points.filter((p) => p.timestamp >= min && p.timestamp <= max);
      if (!inside.length) return null;
      startStep = Math.min(...inside.map((p) => p.step));
      endStep = Math.max(...inside.map((p) => p.step));
    }
    const zoomed = await this.history(key, { max_points: maxPoints, start_step: startStep, end_step: endStep });
    return this.seriesOf(zoomed.points);
  }

  /** Splits history points into one series per step run, labelled with the step's name. */
  seriesOf(points) {
    const names = this.options.stepNames();
    const groups = new Map();
    for (const point of points) {
      const id = point.step_run_id ?? "";
      if (!groups.has(id)) groups.set(id, []);
      groups.get(id).push(point);
    }
    if (!groups.size) return [{ label: "run", points: [] }];
    return [...groups.entries()].map(([id, group]) => ({
      label: id ? names.get(id) ?? shortId(id) : "run",
      points: group,
    }));
  }
}

/** Orders numbers numerically with NaN last, and anything else as text. */
function compareValues(a, b) {
  if (typeof a === "number" && typeof b === "number") {
    if (Number.isNaN(a)) return Number.isNaN(b) ? 0 : 1;
    if (Number.isNaN(b)) return -1;
    if (a === b) return 0;
    return a < b ? -1 : 1;
  }
  return String(a).localeCompare(String(b));
}
