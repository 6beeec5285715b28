// Line charts of metric series on uPlot.
//
// renderMetricChart(container, options) draws one chart of one or more series and returns a
// controller. Options:
//   series:  [{label, points: [{step, timestamp, value}]}], each point as the metric history
//            API returns it (value may be the string "NaN", "Infinity" or "-Infinity", which
//            are drawn as gaps)
//   xMode:   "step" (default) or "time" (timestamps in milliseconds since the Unix epoch)
//   height:  plot height in pixels (default 220)
//   title:   text above the plot (optional)
//   onZoom:  async ({min, max, xMode}) => series or null. Called after a drag selection with
//            the selected x range (steps, or milliseconds in time mode). When it returns
//            series, they replace the drawn ones, such as the range re-read at full resolution.
// The controller has setXMode(mode), setSeries(series), resetZoom() and destroy(). The
// container's data-points attribute is kept at the number of points drawn.
// Hovering shows each series' value at the cursor in the legend; a double click or the
// "reset zoom" button returns to the series first given.

import uPlot from "../vendor/uplot.esm.js";
import { formatNumber, formatTick, formatTime, h, metricNumber } from "../format.js";

/** Line colours, picked to stay distinct on a white background. */
const PALETTE = [
  "#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c",
  "#0891b2", "#ca8a04", "#db2777", "#4b5563", "#65a30d",
];

/** Draws a chart of `options.series` into `container` and returns its controller. */
export function renderMetricChart(container, options) {
  const state = {
    xMode: options.xMode === "time" ? "time" : "step",
    original: options.series,
    series: options.series,
    zoomed: false,
    plot: null,
  };
  const plotSlot = h("div", { class: "chart-plot" });
  const reset = h("button", { type: "button", class: "link reset-zoom", text: "reset zoom", hidden: true });
  const status = h("span", { class: "muted chart-status" });
  container.replaceChildren(
    h("div", { class: "chart-head" }, options.title ? h("strong", { text: options.title }) : null, status, reset),
    plotSlot,
  );

  const draw = () => {
    state.plot?.destroy();
    const width = Math.max(240, plotSlot.clientWidth || container.clientWidth || 600);
    const data = alignedData(state.series, state.xMode);
    container.dataset.points = String(countPoints(state.series));
    state.plot = new uPlot(plotOptions(state, options, width), data, plotSlot);
    state.plot.over.addEventListener("dblclick", () => controller.resetZoom());
  };

  const controller = {
    setXMode(mode) {
      state.xMode = mode === "time" ? "time" : "step";
      draw();
    },
    setSeries(series) {
      state.original = series;
      state.series = series;
      state.zoomed = false;
      reset.hidden = true;
      draw();
    },
    resetZoom() {
      if (!state.zoomed) return;
      state.series = state.original;
      state.zoomed = false;
      reset.hidden = true;
      status.textContent = "";
      draw();
    },
    destroy() {
      observer.disconnect();
      state.plot?.destroy();
    },
  };

  state.onSelect = async (min, max) => {
    if (!options.onZoom || !(max > min)) return;
    status.textContent = "loading…";
    try {
      const series = await options.onZoom({ min, max, xMode: state.xMode });
      if (series) {
        state.series = series;
        draw();
      }
      state.zoomed = true;
      reset.hidden = false;
      status.textContent = "";
    } catch (error) {
      status.textContent = `cannot load the range: ${error.message}`;
    }
  };

  reset.addEventListener("click", () => controller.resetZoom());
  const observer = new ResizeObserver(() => {
    const width = plotSlot.clientWidth;
    if (state.plot && width > 0 && Math.abs(width - state.plot.width) > 4) {
      state.plot.setSize({ width, height: options.height || 220 });
    }
  });
  observer.observe(plotSlot);
  draw();
  return controller;
}

function countPoints(series) {
  return series.reduce((sum, one) => sum + one.points.length, 0);
}

/** Returns the x value of a point: its step, or its time in seconds as uPlot's time axis expects. */
function xOf(point, xMode) {
  return xMode === "time" ? point.timestamp / 1000 : point.step;
}

/** Returns a y value uPlot can draw: NaN and the infinities become gaps. */
function yOf(point) {
  const value = metricNumber(point.value);
  return Number.isFinite(value) ? value : null;
}

/**
 * Builds uPlot's column data: one sorted x array and one y array per series. With several
 * series the x array is the union of their x values and each series has gaps elsewhere.
 */
function alignedData(series, xMode) {
  if (series.length === 1) {
    const points = [...series[0].points].sort((a, b) => xOf(a, xMode) - xOf(b, xMode));
    return [points.map((p) => xOf(p, xMode)), points.map(yOf)];
  }
  const xs = new Set();
  const lookups = series.map((one) => {
    const byX = new Map();
    for (const point of one.points) {
      const x = xOf(point, xMode);
      xs.add(x);
      byX.set(x, yOf(point));
    }
    return byX;
  });
  const sorted = [...xs].sort((a, b) => a - b);
  return [sorted, ...lookups.map((byX) => sorted.map((x) => (byX.has(x) ? byX.get(x) : null)))];
}

function plotOptions(state, options, width) {
  const time = state.xMode === "time";
  return {
    width,
    height: options.height || 220,
    scales: { x: { time } },
    cursor: { drag: { x: true, y: false, setScale: true } },
    legend: { live: true },
    axes: [
      time ? {} : { label: "step", values: (_, ticks) => ticks.map(formatTick) },
      { values: (_, ticks) => ticks.map(formatTick), size: 56 },
    ],
    series: [
      { label: time ? "time" : "step", value: (_, v) => (v === null ? "–" : time ? formatTime(v * 1000) : formatNumber(v)) },
      ...state.series.map((one, index) => ({
        label: one.label,
        stroke: PALETTE[index % PALETTE.length],
        width: 1.5,
        spanGaps: state.series.length > 1,
        points: { show: one.points.length <= 60 },
        value: (_, v) => (v === null ? "–" : formatNumber(v)),
      })),
    ],
    hooks: {
      setSelect: [
        (plot) => {
          const { left, width: selected } = plot.select;
          if (selected < 2) return;
          const min = plot.posToVal(left, "x");
          const max = plot.posToVal(left + selected, "x");
          state.onSelect(time ? min * 1000 : min, time ? max * 1000 : max);
        },
      ],
    },
  };
}
