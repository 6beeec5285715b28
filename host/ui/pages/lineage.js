// Lineage page, /lineage?kind=KIND&id=ID&depth=N&direction=both|upstream|downstream: the
// details of one node and the graph around it, from GET /api/v1/lineage.

import { KIND_NAMES, lineageUrl, renderLineageGraph } from "../components/graph.js";
import { segment } from "../api.js";
import { formatBytes, formatTime, h } from "../format.js";
import {
  downloadLink,
  ensureGraphStyles,
  errorText,
  finish,
  isAbort,
  pageLink,
  shortUuid,
  showError,
} from "./graph-helpers.js";

/** Maximum depth the lineage API accepts. */
const MAX_DEPTH = 100;

/** Depth used when the URL names none: less than the API's default of 10, to stay readable. */
const DEFAULT_DEPTH = 3;

const DIRECTIONS = ["both", "upstream", "downstream"];

/** Maximum number of links of an artifact to runs and steps listed; the rest are counted. */
const MAX_LISTED_LINKS = 20;

/** Renders the lineage page into `root`. */
export async function render(root, route, ctx) {
  ensureGraphStyles();
  const request = readRequest(route.params);
  const page = h("section", { class: "ug-page lineage-page" });
  root.replaceChildren(page);
  ctx.setTitle(request.id ? `Lineage of ${request.kind} ${request.id}` : "Lineage");
  page.append(h("h1", {}, "Lineage"), controls(request, ctx));

  if (request.problem) {
    showError(page, request.problem);
    finish(ctx, "lineage");
    return;
  }
  try {
    await renderNode(page, request, ctx);
  } catch (error) {
    if (isAbort(ctx, error)) {
      return;
    }
    showError(page, error);
  }
  finish(ctx, "lineage");
}

/** Reads the query of the page URL, with `problem` set when it cannot name a node. */
function readRequest(params) {
  const request = {
    kind: params.get("kind") ?? "",
    id: params.get("id") ?? "",
    depth: params.get("depth") ?? String(DEFAULT_DEPTH),
    direction: params.get("direction") ?? "both",
  };
  if (!request.kind || !request.id) {
    request.problem =
      "the lineage page needs a node: open it as /lineage?kind=KIND&id=ID, " +
      "or follow a link from a run or a model version";
  } else if (!Object.hasOwn(KIND_NAMES, request.kind)) {
    request.problem =
      `unknown node kind \`${request.kind}\`: use one of ` +
      `${Object.keys(KIND_NAMES).join(", ")}`;
  } else if (!/^\d+$/.test(request.depth) || +request.depth < 1 || +request.depth > MAX_DEPTH) {
    request.problem =
      `invalid depth \`${request.depth}\`: choose a whole number from 1 to ` + MAX_DEPTH;
  } else if (!DIRECTIONS.includes(request.direction)) {
    request.problem = `invalid direction \`${request.direction}\`: use ${DIRECTIONS.join(", ")}`;
  }
  return request;
}

/** Returns the URL of this page for `request` with `change` applied. */
function pageUrl(request, change = {}) {
  const next = { ...request, ...change };
  return lineageUrl(next.kind, next.id, { depth: next.depth, direction: next.direction });
}

/** Builds the depth and direction controls, which reload the page with the new value. */
function controls(request, ctx) {
  const depth = h("input", {
    type: "number",
    min: 1,
    max: MAX_DEPTH,
    step: 1,
    value: request.depth,
    "data-testid": "depth",
    name: "depth",
  });
  depth.addEventListener("change", () => ctx.navigate(pageUrl(request, { depth: depth.value })));

  const direction = h(
    "select",
    { "data-testid": "direction", name: "direction" },
    DIRECTIONS.map((name) =>
      h("option", { value: name, selected: name === request.direction }, name),
    ),
  );
  direction.addEventListener("change", () => {
    ctx.navigate(pageUrl(request, { direction: direction.value }));
  });

  return h(
    "div",
    { class: "ug-controls" },
    h("label", {}, "Depth", depth, h("span", { class: "muted" }, `edges (1 to ${MAX_DEPTH})`)),
    h("label", {}, "Direction", direction),
  );
}

/** Loads the graph around the node, then shows the node's details and the graph. */
async function renderNode(page, request, ctx) {
  const query = {
    node: `${request.kind}:${request.id}`,
    depth: request.depth,
    direction: request.direction,
  };
  const graph = await ctx.api.get("/api/v1/lineage", query, { signal: ctx.signal });
  const node = graph.nodes.find(
    (candidate) => candidate.kind === request.kind && candidate.id === request.id,
  ) ?? { kind: request.kind, id: request.id, label: request.id };

  const details = h("section", { "data-testid": "node-details" });
  page.append(h("h2", {}, `${KIND_NAMES[node.kind]} ${node.label || node.id}`), details);
  details.append(await nodeDetails(node, ctx));

  const summary =
    `${graph.nodes.length} nodes, ${graph.edges.length} edges, ` +
    `${request.direction} to depth ${request.depth}`;
  const container = h("div", { "data-testid": "lineage-graph" });
  page.append(h("h2", {}, "Graph ", h("span", { class: "muted" }, summary)), container);
  await renderLineageGraph(container, graph, {
    current: node,
    onNodeClick: (clicked) =>
      ctx.navigate(pageUrl(request, { kind: clicked.kind, id: clicked.id })),
  });
}

/** Returns the details list of a node, by kind. */
async function nodeDetails(node, ctx) {
  switch (node.kind) {
    case "artifact":
      return artifactDetails(node, ctx);
    case "step_run":
      return detailList([
        ["Step", node.label],
        ["Step run id", h("code", {}, node.id)],
        ["Status", node.status ?? "—"],
        ["Run", runLink(node.run_id)],
      ]);
    case "run":
      return detailList([
        ["Run", runLink(node.id, node.label)],
        ["Status", node.status ?? "—"],
        ["Parent run", node.parent_run_id ? lineageLink("run", node.parent_run_id) : "—"],
      ]);
    case "named_dataset":
      return detailList([
        ["Name", node.label],
        ["Namespace", node.namespace ?? "—"],
      ]);
    default:
      return detailList([
        ["Name", node.label],
        ["Digest", h("code", {}, node.id)],
      ]);
  }
}

/** Lists an artifact's digest, size, media type and users, with a download link. */
async function artifactDetails(node, ctx) {
  let metadata;
  try {
    metadata = await ctx.api.get(
      `/api/v1/artifacts/${segment(node.id)}/metadata`,
      {},
      {
        signal: ctx.signal,
      },
    );
  } catch (error) {
    if (isAbort(ctx, error)) {
      throw error;
    }
    return detailList([
      ["Names", node.label],
      ["Digest", h("code", {}, node.id)],
      ["Metadata", h("span", { class: "muted" }, `failed to load: ${errorText(error)}`)],
    ]);
  }
  const download = metadata.stored
    ? downloadLink(ctx, metadata.digest, fileName(node, metadata))
    : h("span", { class: "muted" }, "not in this server's artifact store");
  const list = detailList([
    ["Names", node.label],
    ["Digest", h("code", {}, metadata.digest)],
    ["Size", `${formatBytes(metadata.size)} (${metadata.size} bytes)`],
    ["Media type", metadata.media_type],
    ["First recorded", formatTime(metadata.created_at)],
    ["Content", download],
  ]);
  return h("div", {}, list, artifactUsers(metadata.links));
}

/** Returns a file name for a download: the artifact's first name with a guessed extension. */
function fileName(node, metadata) {
  const name = (node.label || metadata.digest).split(", ")[0];
  return name.includes(".") ? name : `${name}${extensionOf(metadata.media_type)}`;
}

function extensionOf(mediaType) {
  const known = {
    "text/csv": ".csv",
    "application/json": ".json",
    "image/png": ".png",
    "image/svg+xml": ".svg",
    "text/plain": ".txt",
  };
  return known[mediaType] ?? "";
}

/** Lists the runs and steps that consumed or produced an artifact. */
function artifactUsers(links) {
  if (!links.length) {
    return h("p", { class: "muted" }, "No run links this artifact.");
  }
  const rows = links
    .slice(0, MAX_LISTED_LINKS)
    .map((link) =>
      h(
        "tr",
        {},
        h("td", {}, link.direction),
        h("td", {}, link.name),
        h("td", {}, link.step_name ?? h("span", { class: "muted" }, "run level")),
        h("td", {}, runLink(link.run_id)),
        h("td", {}, formatTime(link.linked_at)),
      ),
    );
  const table = h(
    "table",
    { class: "ug-table", "data-testid": "artifact-links" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ["Direction", "Name", "Step", "Run", "Linked"].map((title) => h("th", {}, title)),
      ),
    ),
    h("tbody", {}, rows),
  );
  const more =
    links.length > MAX_LISTED_LINKS
      ? h("p", { class: "muted" }, `and ${links.length - MAX_LISTED_LINKS} more links`)
      : null;
  return h("div", {}, h("h3", {}, "Used by"), table, more);
}

function detailList(entries) {
  return h(
    "dl",
    { class: "ug-details" },
    entries.flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, value ?? "—")]),
  );
}

function runLink(runId, text) {
  if (!runId) {
    return "—";
  }
  return pageLink(`/runs/${segment(runId)}`, text ? `${text} (${shortUuid(runId)})` : runId);
}

function lineageLink(kind, id) {
  return pageLink(lineageUrl(kind, id), id);
}
