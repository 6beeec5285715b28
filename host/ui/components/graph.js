// Lineage graph: draws the nodes and edges of a lineage API response as SVG, laid out left to
// right by dagre, with pan (drag), zoom (wheel) and fit-to-view.
//
// renderLineageGraph(container, graph, options) replaces the content of `container`.
//   graph: the body of GET /api/v1/lineage or GET /api/v1/runs/{id}/lineage, that is
//     {nodes: [{kind, id, label, run_id, status, ...}], edges: [{source: {kind, id},
//     target: {kind, id}, run_id, created_at}]}.
//   options.current: {kind, id} of the node to highlight.
//   options.onNodeClick(node, event): called when a node is clicked or activated with Enter.
//     Without it, a click goes to /lineage?kind=KIND&id=ID through options.navigate(url), or
//     through location.assign when options.navigate is missing too.
//   options.height: height of the drawing in CSS pixels; by default it follows the graph's
//     height between 220 and 640.
// It returns a promise of {svg, fit()} once the graph is drawn. It rejects when the layout
// library cannot be loaded.

import { ensureGraphStyles, shortUuid } from "../pages/graph-helpers.js";

const SVG_NS = "http://www.w3.org/2000/svg";

/** URL of dagre's browser build, which defines the global `dagre`. */
const DAGRE_URL = "/ui/vendor/dagre.min.js";

/**
 * Maximum number of nodes drawn, because the page is frozen while dagre lays a graph out. On a
 * 2-core machine that was compiling at the same time, a chain-like graph of 600 nodes took
 * 0.6 s to draw in headless Chromium. dagre 3.1.3 alone took 3 s for a random graph of 1,000
 * nodes in Node 20.
 */
const MAX_DRAWN_NODES = 1000;

/** Maximum characters of a label line; the node's tooltip shows the full label. */
const MAX_LABEL_CHARS = 30;

const NODE_HEIGHT = 46;

/** Space in pixels kept between a node's text and each side of its shape. */
const LABEL_PADDING = 6;
const CHAR_WIDTH = 7;
const MIN_ZOOM = 0.05;

/**
 * Smallest scale "fit" uses, so the 12 px labels stay at least about 8 px tall. A graph that
 * is larger at this scale than its box is panned or zoomed out by hand instead.
 */
const MIN_FIT_SCALE = 0.65;
const MAX_ZOOM = 4;

/** Words shown for each node kind of the lineage API. */
export const KIND_NAMES = {
  dataset: "dataset",
  artifact: "artifact",
  step_run: "step run",
  run: "run",
  named_dataset: "named dataset",
};

let dagreLoading = null;

/** Loads dagre once with a <script> tag and returns it. */
export function loadDagre() {
  if (window.dagre) {
    return Promise.resolve(window.dagre);
  }
  if (!dagreLoading) {
    dagreLoading = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = DAGRE_URL;
      script.onload = () => resolve(window.dagre);
      script.onerror = () => {
        dagreLoading = null;
        reject(
          new Error(
            `failed to load the graph layout library from ${DAGRE_URL}: ` +
              "run `cargo xtask setup` and rebuild runledger",
          ),
        );
      };
      document.head.append(script);
    });
  }
  return dagreLoading;
}

/** Returns the URL of the lineage page of a node. */
export function lineageUrl(kind, id, extra = {}) {
  const query = new URLSearchParams({ kind, id, ...extra });
  return `/lineage?${query}`;
}

/** Returns the key that names a node in the layout: `KIND:ID`. */
function nodeKey(node) {
  return `${node.kind}:${node.id}`;
}

/** Returns the short form of a node's id: 12 hex digits of a digest, the ends of a UUID. */
export function shortId(kind, id) {
  if (kind === "dataset" || kind === "artifact") {
    return id.slice(0, 12);
  }
  if (kind === "step_run" || kind === "run") {
    return shortUuid(id);
  }
  return id.length > MAX_LABEL_CHARS ? `…${id.slice(-MAX_LABEL_CHARS)}` : id;
}

function cut(text) {
  return text.length > MAX_LABEL_CHARS ? `${text.slice(0, MAX_LABEL_CHARS - 1)}…` : text;
}

/** Returns the two lines a node shows: its label and its kind with its short id. */
function nodeLines(node) {
  const title = cut(node.label || node.id);
  const subtitle = `${KIND_NAMES[node.kind] ?? node.kind} ${shortId(node.kind, node.id)}`;
  return [title, cut(subtitle)];
}

/** Draws a lineage graph into `container`; see the header of this file. */
export async function renderLineageGraph(container, graph, options = {}) {
  await ensureGraphStyles();
  const nodes = graph?.nodes ?? [];
  const edges = graph?.edges ?? [];
  container.replaceChildren();
  container.classList.add("lineage-graph");

  if (nodes.length === 0) {
    container.append(notice("no lineage is recorded here: no step read or wrote an artifact"));
    return { svg: null, fit() {} };
  }
  if (nodes.length > MAX_DRAWN_NODES) {
    container.append(
      notice(
        `the graph has ${nodes.length} nodes, more than the ` +
          `${MAX_DRAWN_NODES} this page draws: lower the depth or choose one direction`,
      ),
    );
    return { svg: null, fit() {} };
  }

  const dagre = await loadDagre();
  const layout = layOut(dagre, nodes, edges);
  const view = drawSvg(layout, nodes, edges, options);
  container.append(toolbar(view), view.svg, legend());
  fitLabels(view.svg);
  view.fit();
  // The container may get its final size only once the page is attached and laid out.
  requestAnimationFrame(() => view.fit());
  return { svg: view.svg, fit: view.fit };
}

function notice(text) {
  const paragraph = document.createElement("p");
  paragraph.className = "lineage-notice";
  paragraph.textContent = text;
  return paragraph;
}

/** Runs dagre on the nodes and the edges whose ends are both known. */
function layOut(dagre, nodes, edges) {
  const layout = new dagre.graphlib.Graph({ multigraph: true });
  layout.setGraph({ rankdir: "LR", nodesep: 16, ranksep: 56, marginx: 16, marginy: 16 });
  layout.setDefaultEdgeLabel(() => ({}));

  for (const node of nodes) {
    const lines = nodeLines(node);
    const chars = Math.max(...lines.map((line) => line.length));
    layout.setNode(nodeKey(node), {
      width: Math.max(120, chars * CHAR_WIDTH + 28),
      height: NODE_HEIGHT,
    });
  }
  edges.forEach((edge, index) => {
    const source = nodeKey(edge.source);
    const target = nodeKey(edge.target);
    if (layout.hasNode(source) && layout.hasNode(target)) {
      layout.setEdge(source, target, {}, `e${index}`);
    }
  });

  dagre.layout(layout);
  return layout;
}

function svgElement(tag, attributes = {}) {
  const element = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) {
    element.setAttribute(name, String(value));
  }
  return element;
}

/** Builds the SVG with its pan and zoom handlers and returns it with its view controls. */
function drawSvg(layout, nodes, edges, options) {
  const size = layout.graph();
  const height = options.height ?? Math.min(640, Math.max(220, size.height + 16));
  const svg = svgElement("svg", { class: "lineage-svg", role: "img", height });
  svg.setAttribute(
    "aria-label",
    `lineage graph of ${nodes.length} nodes and ${edges.length} edges`,
  );
  svg.append(arrowMarker());

  const scene = svgElement("g", { class: "lineage-scene" });
  const edgeLayer = svgElement("g", { class: "lineage-edges" });
  const nodeLayer = svgElement("g", { class: "lineage-nodes" });
  scene.append(edgeLayer, nodeLayer);
  svg.append(scene);

  drawEdges(edgeLayer, layout, edges);
  const state = { dragged: false };
  drawNodes(nodeLayer, layout, nodes, options, state);
  return attachPanZoom(svg, scene, size, state);
}

function arrowMarker() {
  const defs = svgElement("defs");
  const marker = svgElement("marker", {
    id: "lineage-arrow",
    viewBox: "0 0 10 10",
    refX: 9,
    refY: 5,
    markerWidth: 7,
    markerHeight: 7,
    orient: "auto-start-reverse",
  });
  marker.append(svgElement("path", { d: "M0,0 L10,5 L0,10 z", class: "lineage-arrow" }));
  defs.append(marker);
  return defs;
}

function drawEdges(layer, layout, edges) {
  const fragment = document.createDocumentFragment();
  edges.forEach((edge, index) => {
    const source = nodeKey(edge.source);
    const target = nodeKey(edge.target);
    const laid = layout.edge({ v: source, w: target, name: `e${index}` });
    if (!laid) {
      return;
    }
    const path = svgElement("path", {
      d: curveThrough(laid.points),
      class: "lineage-edge",
      "data-testid": "lineage-edge",
      "data-source": source,
      "data-target": target,
      "marker-end": "url(#lineage-arrow)",
    });
    const title = svgElement("title");
    title.textContent = `${source} → ${target} (run ${edge.run_id})`;
    path.append(title);
    fragment.append(path);
  });
  layer.append(fragment);
}

/** Returns an SVG path through `points`, rounded at the bends with quadratic curves. */
function curveThrough(points) {
  const [first, ...rest] = points;
  let d = `M${first.x},${first.y}`;
  for (let i = 0; i < rest.length - 1; i += 1) {
    const bend = rest[i];
    const next = rest[i + 1];
    d += ` Q${bend.x},${bend.y} ${(bend.x + next.x) / 2},${(bend.y + next.y) / 2}`;
  }
  const last = rest[rest.length - 1];
  return `${d} L${last.x},${last.y}`;
}

function drawNodes(layer, layout, nodes, options, state) {
  const fragment = document.createDocumentFragment();
  const current = options.current ? nodeKey(options.current) : null;
  for (const node of nodes) {
    const laid = layout.node(nodeKey(node));
    const group = nodeGroup(node, laid, nodeKey(node) === current);
    group.addEventListener("click", (event) => {
      if (!state.dragged) {
        activate(node, event, options);
      }
    });
    group.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        activate(node, event, options);
      }
    });
    fragment.append(group);
  }
  layer.append(fragment);
}

function activate(node, event, options) {
  if (options.onNodeClick) {
    options.onNodeClick(node, event);
    return;
  }
  const url = lineageUrl(node.kind, node.id);
  if (options.navigate) {
    options.navigate(url);
  } else {
    window.location.assign(url);
  }
}

/** Builds the group of one node: its shape, its two lines of text and a tooltip. */
function nodeGroup(node, laid, isCurrent) {
  const { width, height } = laid;
  const group = svgElement("g", {
    class: isCurrent ? "lineage-node current" : "lineage-node",
    transform: `translate(${laid.x - width / 2},${laid.y - height / 2})`,
    "data-testid": "lineage-node",
    "data-kind": node.kind,
    "data-id": node.id,
    tabindex: 0,
    role: "link",
  });
  if (node.status) {
    group.setAttribute("data-status", node.status);
  }
  const [title, subtitle] = nodeLines(node);
  group.setAttribute(
    "aria-label",
    `${KIND_NAMES[node.kind] ?? node.kind} ${node.label || node.id}`,
  );

  const tooltip = svgElement("title");
  tooltip.textContent = tooltipText(node);
  group.append(tooltip, nodeShape(node.kind, width, height));
  group.append(textLine(title, width, 19, "lineage-label"));
  group.append(textLine(subtitle, width, 35, "lineage-subtitle"));
  return group;
}

function tooltipText(node) {
  const lines = [`${KIND_NAMES[node.kind] ?? node.kind}: ${node.label || node.id}`, node.id];
  if (node.namespace) {
    lines.push(`namespace ${node.namespace}`);
  }
  if (node.status) {
    lines.push(`status ${node.status}`);
  }
  if (node.run_id && node.kind === "step_run") {
    lines.push(`run ${node.run_id}`);
  }
  return lines.join("\n");
}

/** Builds a line of text centred in a node `width` wide; fitLabels shortens it if needed. */
function textLine(text, width, y, className) {
  const element = svgElement("text", {
    x: width / 2,
    y,
    class: className,
    "text-anchor": "middle",
    "data-max-width": width - 2 * LABEL_PADDING,
  });
  element.textContent = text;
  return element;
}

/**
 * Returns the outline of a node: a cylinder for datasets (dashed for named datasets), a page
 * with a folded corner for artifacts, a pill for step runs and a double box for runs.
 */
function nodeShape(kind, width, height) {
  const group = svgElement("g", { class: "lineage-shape" });
  if (kind === "dataset" || kind === "named_dataset") {
    const rim = 6;
    const half = width / 2;
    group.append(
      svgElement("path", {
        d:
          `M0,${rim} A${half},${rim} 0 0 1 ${width},${rim} V${height - rim} ` +
          `A${half},${rim} 0 0 1 0,${height - rim} Z`,
      }),
    );
    group.append(
      svgElement("path", {
        d: `M0,${rim} A${half},${rim} 0 0 0 ${width},${rim}`,
        class: "lineage-rim",
      }),
    );
  } else if (kind === "artifact") {
    const fold = 10;
    group.append(
      svgElement("path", {
        d: `M0,0 H${width - fold} L${width},${fold} V${height} H0 Z`,
      }),
    );
    group.append(
      svgElement("path", { d: `M${width - fold},0 V${fold} H${width}`, class: "lineage-rim" }),
    );
  } else if (kind === "step_run") {
    group.append(svgElement("rect", { width, height, rx: height / 2 }));
  } else {
    group.append(svgElement("rect", { width, height, rx: 3 }));
    group.append(
      svgElement("rect", {
        x: 3,
        y: 3,
        width: width - 6,
        height: height - 6,
        rx: 2,
        class: "lineage-rim",
      }),
    );
  }
  return group;
}

/** Adds wheel zoom and drag pan to `svg`, moving `scene`, and returns the view controls. */
function attachPanZoom(svg, scene, size, state) {
  const view = { x: 0, y: 0, scale: 1 };
  const apply = () => {
    scene.setAttribute("transform", `translate(${view.x},${view.y}) scale(${view.scale})`);
  };

  const zoomAt = (factor, px, py) => {
    const scale = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, view.scale * factor));
    view.x = px - ((px - view.x) * scale) / view.scale;
    view.y = py - ((py - view.y) * scale) / view.scale;
    view.scale = scale;
    apply();
  };

  svg.addEventListener(
    "wheel",
    (event) => {
      event.preventDefault();
      const box = svg.getBoundingClientRect();
      zoomAt(Math.exp(-event.deltaY * 0.0015), event.clientX - box.left, event.clientY - box.top);
    },
    { passive: false },
  );
  attachDrag(svg, view, apply, state);

  const fit = () => {
    const box = svg.getBoundingClientRect();
    const width = box.width || size.width;
    const height = box.height || size.height;
    view.scale = Math.max(MIN_FIT_SCALE, Math.min(1.25, width / size.width, height / size.height));
    view.x = centredOffset(width, size.width * view.scale);
    view.y = centredOffset(height, size.height * view.scale);
    apply();
  };
  const zoomCentre = (factor) => {
    const box = svg.getBoundingClientRect();
    zoomAt(factor, box.width / 2, box.height / 2);
  };
  return { svg, fit, zoomIn: () => zoomCentre(1.25), zoomOut: () => zoomCentre(0.8) };
}

/**
 * Shortens each node's text lines that are wider than their node, with an ellipsis, because
 * the node widths come from a character estimate and wide glyphs can exceed it. The tooltip
 * keeps the full text. Needs the svg to be attached, so text can be measured.
 */
function fitLabels(svg) {
  for (const text of svg.querySelectorAll("text[data-max-width]")) {
    const limit = Number(text.dataset.maxWidth);
    let content = text.textContent;
    while (content.length > 1 && text.getComputedTextLength() > limit) {
      content = content.slice(0, -1);
      text.textContent = `${content.replace(/…$/, "")}…`;
    }
  }
}

/** Returns the offset that centres a drawn length in a box, or 0 when it is longer than the box. */
function centredOffset(box, drawn) {
  return drawn <= box ? (box - drawn) / 2 : 0;
}

/** Pans the view while the pointer is dragged; a move of a few pixels is not a click. */
function attachDrag(svg, view, apply, state) {
  let start = null;
  svg.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) {
      return;
    }
    start = {
      x: event.clientX,
      y: event.clientY,
      viewX: view.x,
      viewY: view.y,
      id: event.pointerId,
    };
    state.dragged = false;
  });
  svg.addEventListener("pointermove", (event) => {
    if (!start || event.pointerId !== start.id) {
      return;
    }
    const dx = event.clientX - start.x;
    const dy = event.clientY - start.y;
    if (!state.dragged && Math.hypot(dx, dy) > 4) {
      state.dragged = true;
      svg.setPointerCapture(event.pointerId);
      svg.classList.add("dragging");
    }
    if (state.dragged) {
      view.x = start.viewX + dx;
      view.y = start.viewY + dy;
      apply();
    }
  });
  const end = () => {
    start = null;
    svg.classList.remove("dragging");
  };
  svg.addEventListener("pointerup", end);
  svg.addEventListener("pointercancel", end);
}

function toolbar(view) {
  const bar = document.createElement("div");
  bar.className = "lineage-toolbar";
  const button = (text, title, testId, action) => {
    const element = document.createElement("button");
    element.type = "button";
    element.textContent = text;
    element.title = title;
    element.dataset.testid = testId;
    element.addEventListener("click", action);
    return element;
  };
  bar.append(
    button("Fit", "fit the whole graph in view", "graph-fit", () => view.fit()),
    button("+", "zoom in", "graph-zoom-in", () => view.zoomIn()),
    button("−", "zoom out", "graph-zoom-out", () => view.zoomOut()),
  );
  const hint = document.createElement("span");
  hint.className = "lineage-hint";
  hint.textContent = "drag to pan, wheel to zoom, click a node to open its lineage";
  bar.append(hint);
  return bar;
}

function legend() {
  const list = document.createElement("ul");
  list.className = "lineage-legend";
  for (const [kind, name] of Object.entries(KIND_NAMES)) {
    const item = document.createElement("li");
    item.dataset.kind = kind;
    item.textContent = name;
    list.append(item);
  }
  return list;
}
