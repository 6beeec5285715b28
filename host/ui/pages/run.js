// The run page: identity and metadata, params and tags, metric charts, artifacts with
// previews, the step timeline with each step's detail, validation results and the lineage
// graph. A queued or running run is polled until it ends.

import { ApiError, segment } from "../api.js";
import { renderArtifacts } from "../components/artifacts.js";
import { MetricsPanel } from "../components/metrics-panel.js";
import { paramsTable, renderStepDetail } from "../components/step-detail.js";
import { renderTimeline } from "../components/timeline.js";
import {
  durationOf,
  fill,
  FINAL_STATUSES,
  formatDuration,
  formatTime,
  h,
  isoTime,
  shortId,
  statusBadge,
} from "../format.js";

/** Milliseconds between two reads of a run that has not ended. */
const POLL_INTERVAL_MS = 1500;

/** Reads after the run ended, so validations recorded just after the end show up too. */
const POLLS_AFTER_END = 2;

/** Renders the run page of the run id in the URL. */
export async function render(root, route, ctx) {
  const runId = route.segments[1] ?? "";
  ctx.setTitle(`Run ${shortId(runId)}`);
  let detail;
  try {
    detail = await loadDetail(ctx, runId);
  } catch (error) {
    if (!(error instanceof ApiError) || error.status === 401) throw error;
    root.replaceChildren(missingRun(runId, error));
    document.body.dataset.ready = "run";
    return;
  }
  ctx.setTitle(`Run ${detail.run.name || shortId(runId)}`);
  const page = new RunPage(root, detail, ctx);
  await page.renderAll();
  if (ctx.signal.aborted) return;
  document.body.dataset.ready = "run";
  if (!FINAL_STATUSES.has(detail.run.status)) page.poll();
}

function loadDetail(ctx, runId) {
  return ctx.api.get(`/api/v1/runs/${segment(runId)}`, undefined, { signal: ctx.signal });
}

/** Builds the error shown for a run id that names no run, or is no run id at all. */
function missingRun(runId, error) {
  let message;
  if (error.status === 404) {
    message = `no run with id ${runId}: check the id or go back to the runs list`;
  } else if (error.status === 400) {
    message = `no run with id ${runId}: run ids are UUIDs such as 01939a4e-5c1a-7c3e-9d2b-6f1e2a3b4c5d; check the id or go back to the runs list`;
  } else {
    message = `cannot load run ${runId}: ${error.message}`;
  }
  return h(
    "section",
    {},
    h("p", { class: "error", "data-testid": "error", role: "alert", text: message }),
    h("p", {}, h("a", { href: "/runs", text: "← all runs" })),
  );
}

/** The sections of a run page and the state that polling updates. */
class RunPage {
  constructor(root, detail, ctx) {
    this.ctx = ctx;
    this.detail = detail;
    this.runId = detail.run.id;
    this.sections = {
      meta: h("section", { class: "card", "data-testid": "run-meta" }),
      params: h("div", { "data-testid": "params" }),
      tags: h("div", { "data-testid": "tags" }),
      metrics: h("div", { class: "metrics", "data-testid": "metrics" }),
      artifacts: h("div", { "data-testid": "artifacts" }),
      timeline: h("div", { class: "timeline", "data-testid": "timeline" }),
      stepDetail: h("aside", { class: "card step-detail", "data-testid": "step-detail", hidden: true }),
      validations: h("div", { "data-testid": "validations" }),
      lineage: h("div", { class: "run-lineage", "data-testid": "run-lineage" }),
    };
    this.metrics = new MetricsPanel(this.sections.metrics, {
      runId: this.runId,
      api: ctx.api,
      signal: ctx.signal,
      stepNames: () => this.stepNames(),
    });
    root.replaceChildren(this.layout());
  }

  layout() {
    const s = this.sections;
    const title = h("h1", {}, this.detail.run.name || shortId(this.runId));
    return h(
      "article",
      { class: "run-page" },
      h("p", { class: "crumbs" }, h("a", { href: "/runs", text: "Runs" }), " / ", h("span", { class: "mono", text: shortId(this.runId) })),
      title,
      s.meta,
      h("div", { class: "two-col" }, card("Params", s.params), card("Tags", s.tags)),
      card("Metrics", this.axisToggle(), s.metrics),
      card("Steps", s.timeline, s.stepDetail),
      card("Artifacts", s.artifacts),
      card("Validations", s.validations),
      card("Lineage", s.lineage),
    );
  }

  /** Renders every section; resolves once charts, previews and the graph are drawn. */
  async renderAll() {
    this.renderMeta();
    this.sections.params.replaceChildren(paramsTable(this.detail.params));
    this.sections.tags.replaceChildren(paramsTable(this.detail.tags));
    this.renderTimeline();
    this.renderValidations();
    await Promise.all([
      this.metrics.render(this.detail.metrics),
      renderArtifacts(this.sections.artifacts, this.detail.artifacts, this.stepNames()),
      this.renderLineage(),
    ]);
  }

  stepNames() {
    return new Map(this.detail.steps.map((step) => [step.id, step.name]));
  }

  renderMeta() {
    const { run, pipeline, environment } = this.detail;
    const meta = this.sections.meta;
    meta.dataset.status = run.status;
    meta.dataset.runId = run.id;
    const git = environment?.git;
    const rows = [
      ["Run id", h("span", { class: "mono", "data-field": "id", text: run.id })],
      ["Status", statusBadge(run.status)],
      ["Pipeline", pipeline ? pipeline.name : "– (external run)"],
      ["Definition digest", h("span", { class: "mono", "data-field": "digest", title: pipeline?.digest ?? "", text: pipeline?.digest ?? "–" })],
      ["Project", this.detail.project],
      ["User", run.user],
      ["Source", run.source],
      ["Created", h("span", { title: isoTime(run.created_at), text: formatTime(run.created_at) })],
      ["Started", h("span", { title: isoTime(run.started_at), text: formatTime(run.started_at) })],
      ["Ended", h("span", { title: isoTime(run.ended_at), text: formatTime(run.ended_at) })],
      ["Duration", h("span", { "data-field": "duration", text: formatDuration(durationOf(run)) })],
      ["Seed", run.seed ?? "–"],
      ["Git commit", git ? h("span", { class: "mono", "data-field": "git-commit", text: `${git.commit}${git.dirty ? " (dirty)" : ""}` }) : "–"],
    ];
    fill(
      meta,
      h("dl", { class: "facts" }, rows.flatMap(([term, value]) => [h("dt", { text: term }), h("dd", {}, value)])),
      run.error ? h("p", { class: "error", text: run.error }) : null,
      environmentBlock(environment),
    );
  }

  axisToggle() {
    const toggle = h("div", { class: "segmented", role: "group", "aria-label": "x axis", "data-testid": "x-axis" });
    for (const mode of ["step", "time"]) {
      const button = h("button", { type: "button", "data-mode": mode, text: `by ${mode}`, "aria-pressed": String(mode === "step") });
      button.addEventListener("click", () => {
        for (const other of toggle.children) other.setAttribute("aria-pressed", String(other.dataset.mode === mode));
        this.metrics.setXMode(mode);
      });
      toggle.append(button);
    }
    return toggle;
  }

  renderTimeline() {
    const run = this.detail.run;
    renderTimeline(this.sections.timeline, this.detail.steps, {
      runStart: run.started_at ?? run.created_at,
      onSelect: (step) => this.openStep(step),
    });
  }

  openStep(step) {
    renderStepDetail(this.sections.stepDetail, step, this.runId, this.ctx.api);
    this.sections.stepDetail.scrollIntoView({ block: "nearest", behavior: "smooth" });
  }

  renderValidations() {
    const slot = this.sections.validations;
    const records = this.detail.validations || [];
    if (!records.length) {
      slot.replaceChildren(h("p", { class: "muted", text: "no validations recorded" }));
      return;
    }
    slot.replaceChildren(...records.map(validationBlock));
  }

  /** Draws the run's lineage graph with graph.js, loaded only now so a failure stays local. */
  async renderLineage() {
    const slot = this.sections.lineage;
    try {
      const graph = await this.ctx.api.get(`/api/v1/runs/${segment(this.runId)}/lineage`, undefined, { signal: this.ctx.signal });
      const module = await import("../components/graph.js");
      slot.replaceChildren();
      await module.renderLineageGraph(slot, graph, { navigate: this.ctx.navigate, current: { kind: "run", id: this.runId } });
    } catch (error) {
      if (error.name === "AbortError") return;
      slot.replaceChildren(h("p", { class: "error", text: `cannot show the lineage graph: ${error.message}` }));
    }
  }

  /** Re-reads the run every POLL_INTERVAL_MS until it ends, then a few more times. */
  async poll() {
    let afterEnd = 0;
    while (!this.ctx.signal.aborted && afterEnd <= POLLS_AFTER_END) {
      await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
      if (this.ctx.signal.aborted) return;
      try {
        this.detail = await loadDetail(this.ctx, this.runId);
      } catch (error) {
        if (error.name === "AbortError" || error.status === 401) return;
        continue;
      }
      await this.refresh();
      if (FINAL_STATUSES.has(this.detail.run.status)) afterEnd += 1;
    }
    if (!this.ctx.signal.aborted) await this.renderLineage();
  }

  async refresh() {
    this.renderMeta();
    this.sections.params.replaceChildren(paramsTable(this.detail.params));
    this.sections.tags.replaceChildren(paramsTable(this.detail.tags));
    this.renderTimeline();
    this.renderValidations();
    const artifacts = this.sections.artifacts;
    if (artifacts.dataset.count !== String(this.detail.artifacts.length)) {
      artifacts.dataset.count = String(this.detail.artifacts.length);
      await renderArtifacts(artifacts, this.detail.artifacts, this.stepNames());
    }
    await this.metrics.render(this.detail.metrics);
  }
}

function card(title, ...children) {
  return h("section", { class: "card" }, h("h2", { text: title }), ...children);
}

/** Renders the environment snapshot: versions and platform in a line, the whole record folded. */
function environmentBlock(environment) {
  if (!environment) return h("p", { class: "muted", "data-field": "environment", text: "no environment recorded" });
  const summary = [
    environment.runledger_version ? `runledger ${environment.runledger_version}` : null,
    environment.wasmtime_version ? `wasmtime ${environment.wasmtime_version}` : null,
    environment.os && environment.arch ? `${environment.os}/${environment.arch}` : null,
    Array.isArray(environment.plugins) ? `${environment.plugins.length} plugins` : null,
  ].filter(Boolean).join(" · ");
  return h(
    "details",
    { class: "environment", "data-field": "environment" },
    h("summary", {}, "Environment ", h("span", { class: "muted", text: summary })),
    h("pre", { class: "json", text: JSON.stringify(environment, null, 2) }),
  );
}

function validationBlock(record) {
  const failed = record.checks.filter((check) => !check.passed);
  let outcome = "passed";
  if (record.error) {
    outcome = "error";
  } else if (failed.length) {
    outcome = "failed";
  }
  return h(
    "div",
    { class: `validation validation-${outcome}`, "data-plugin": record.plugin, "data-outcome": outcome },
    h("p", {}, h("strong", { text: record.plugin }), " ", statusBadge(outcome), h("span", { class: "muted", text: ` ${record.trigger} · ${formatTime(record.created_at)}` })),
    record.error ? h("p", { class: "error", text: record.error }) : null,
    record.checks.length
      ? h("table", { class: "kv" }, h("tbody", {}, record.checks.map((check) => h(
          "tr",
          { "data-check": check.name, "data-passed": String(check.passed) },
          h("td", { text: check.passed ? "✓" : "✗", class: check.passed ? "pass" : "fail" }),
          h("th", { text: check.name }),
          h("td", { class: "muted", text: check.severity }),
          h("td", { text: check.message }),
        ))))
      : null,
  );
}
