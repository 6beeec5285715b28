// A Gantt chart of a run's step runs, drawn with plain DOM: one row per step run, a bar from
// its start to its end on a shared time axis. Cached steps are hatched, failed ones red,
// retried ones marked with their attempt count, and running ones reach the current time.
//
// renderTimeline(container, steps, {runStart, now, onSelect}) fills `container`; `steps` are
// the `steps` of GET /api/v1/runs/{run_id}. Clicking a bar calls onSelect(step).

import { formatDuration, h } from "../format.js";

/** Narrowest bar, in percent of the axis, so instant and cached steps stay clickable. */
const MIN_BAR_PERCENT = 0.6;

/** Fills `container` with the timeline of `steps` and returns the bar elements by step run id. */
export function renderTimeline(container, steps, { runStart, now = Date.now(), onSelect } = {}) {
  container.replaceChildren();
  if (!steps.length) {
    container.append(h("p", { class: "muted", text: "this run has no step runs" }));
    return new Map();
  }
  const { start, end } = axisOf(steps, runStart, now);
  const span = Math.max(end - start, 1);
  const bars = new Map();
  const rows = steps.map((step) => {
    const bar = barOf(step, start, span, now);
    bar.addEventListener("click", () => onSelect?.(step));
    bar.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        onSelect?.(step);
      }
    });
    bars.set(step.id, bar);
    return h(
      "div",
      { class: "timeline-row" },
      h("div", { class: "timeline-label", title: step.name, text: step.name }),
      h("div", { class: "timeline-track" }, bar),
    );
  });
  container.append(
    h("div", { class: "timeline-axis" }, h("span", { text: "0 s" }), h("span", { text: formatDuration(span) })),
    ...rows,
  );
  return bars;
}

/** Returns the time axis: from the earliest start to the latest end, running steps at `now`. */
function axisOf(steps, runStart, now) {
  let start = runStart ?? Infinity;
  let end = -Infinity;
  for (const step of steps) {
    const from = step.started_at ?? step.created_at;
    start = Math.min(start, from);
    end = Math.max(end, step.ended_at ?? (step.status === "running" ? now : from));
  }
  if (!Number.isFinite(start)) start = now;
  if (!Number.isFinite(end) || end < start) end = start;
  return { start, end };
}

function barOf(step, start, span, now) {
  const from = step.started_at ?? step.created_at;
  const to = step.ended_at ?? (step.status === "running" ? now : from);
  const left = ((from - start) / span) * 100;
  const width = Math.max(((to - from) / span) * 100, MIN_BAR_PERCENT);
  const cached = step.status === "cached" || Boolean(step.cached_from);
  const classes = ["timeline-bar", `status-${step.status}`];
  if (cached) classes.push("cached");
  if (step.attempts > 1) classes.push("retried");
  const duration = step.started_at ? formatDuration(to - from) : "not started";
  const label = [
    step.name,
    step.status,
    duration,
    cached ? "cached" : null,
    step.attempts > 1 ? `${step.attempts} attempts` : null,
  ].filter(Boolean).join(" · ");
  return h(
    "div",
    {
      class: classes.join(" "),
      style: `left:${Math.min(left, 100 - MIN_BAR_PERCENT)}%;width:${Math.min(width, 100 - left)}%`,
      role: "button",
      tabindex: "0",
      title: label,
      "aria-label": label,
      "data-testid": "timeline-step",
      "data-step": step.name,
      "data-step-run-id": step.id,
      "data-status": step.status,
      "data-cached": String(cached),
      "data-attempts": String(step.attempts),
    },
    step.attempts > 1 ? h("span", { class: "attempts", text: `×${step.attempts}` }) : null,
  );
}
