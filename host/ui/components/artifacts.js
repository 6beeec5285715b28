// The artifacts of a run: a table with download links, and inline previews of SVG and PNG
// images, CSV tables and text files.
//
// Downloads and previews fetch the artifact with the bearer token, because a plain link
// cannot send the Authorization header. Images are shown from blob URLs in <img>, so an SVG's
// scripts never run in the page.

import { api } from "../api.js";
import { formatBytes, h, shortId } from "../format.js";

/** Bytes of a text or CSV artifact that a preview reads, with a Range request. */
const TEXT_PREVIEW_BYTES = 64 * 1024;

/** Largest image shown inline; bigger ones only get a download link. */
const MAX_IMAGE_BYTES = 8 * 1024 * 1024;

/** Rows of a CSV preview. */
const CSV_PREVIEW_ROWS = 20;

/** Previews loaded with the page; further previewable artifacts get a preview button. */
const AUTO_PREVIEWS = 6;

/** Fills `container` with the artifact table and previews; resolves when previews are shown. */
export async function renderArtifacts(container, artifacts, stepNames) {
  container.replaceChildren();
  if (!artifacts.length) {
    container.append(h("p", { class: "muted", text: "no artifacts recorded" }));
    return;
  }
  const previews = h("div", { class: "previews" });
  const pending = [];
  const seen = new Set();
  const rows = artifacts.map((artifact) => {
    const kind = previewKind(artifact);
    let button = null;
    if (kind && !seen.has(artifact.digest)) {
      seen.add(artifact.digest);
      const slot = h("div", { class: "preview-slot" });
      previews.append(slot);
      if (pending.length < AUTO_PREVIEWS) {
        pending.push(showPreview(slot, artifact, kind));
      } else {
        button = h("button", { type: "button", class: "link", text: "preview" });
        button.addEventListener("click", () => showPreview(slot, artifact, kind));
      }
    }
    return artifactRow(artifact, stepNames, button);
  });
  container.append(
    h(
      "table",
      { class: "kv artifacts" },
      h("thead", {}, h("tr", {}, ["Name", "Step", "Direction", "Type", "Size", "Digest", ""].map((text) => h("th", { text })))),
      h("tbody", {}, rows),
    ),
    previews,
  );
  await Promise.all(pending);
}

function artifactRow(artifact, stepNames, previewButton) {
  const step = artifact.step_run_id ? stepNames.get(artifact.step_run_id) ?? shortId(artifact.step_run_id) : "run";
  return h(
    "tr",
    { "data-digest": artifact.digest },
    h("td", { class: "mono", text: artifact.name }),
    h("td", { text: step }),
    h("td", { text: artifact.direction }),
    h("td", { class: "muted", text: artifact.media_type }),
    h("td", { class: "num", text: formatBytes(artifact.size) }),
    h("td", { class: "mono", title: artifact.digest }, h("a", { href: `/lineage?kind=artifact&id=${artifact.digest}`, text: shortId(artifact.digest) })),
    h("td", {}, downloadLink(artifact), previewButton ? " " : null, previewButton),
  );
}

/** A link to the artifact that downloads it with the token when one is stored. */
function downloadLink(artifact) {
  const name = artifact.name.split("/").pop() || artifact.digest;
  const link = h("a", {
    href: `/api/v1/artifacts/${artifact.digest}`,
    download: name,
    "data-testid": "artifact-download",
    "data-digest": artifact.digest,
    text: "download",
  });
  link.addEventListener("click", async (event) => {
    event.preventDefault();
    try {
      const blob = await api.blob(`/api/v1/artifacts/${artifact.digest}`);
      const url = URL.createObjectURL(blob);
      const temporary = h("a", { href: url, download: name });
      document.body.append(temporary);
      temporary.click();
      temporary.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    } catch (error) {
      link.replaceWith(h("span", { class: "error", text: `download failed: ${error.message}` }));
    }
  });
  return link;
}

/** Returns `svg`, `png`, `csv` or `text` for artifacts the page can show, else null. */
export function previewKind(artifact) {
  const type = (artifact.media_type || "").toLowerCase().split(";")[0].trim();
  const name = artifact.name.toLowerCase();
  if (type === "image/svg+xml" || name.endsWith(".svg")) return "svg";
  if (type === "image/png" || name.endsWith(".png")) return "png";
  if (type === "text/csv" || name.endsWith(".csv")) return "csv";
  const textTypes = ["application/json", "application/x-ndjson", "application/yaml", "application/toml"];
  if (type.startsWith("text/") || textTypes.includes(type)) return "text";
  if (/\.(txt|log|json|jsonl|md|yaml|yml|toml|tsv)$/.test(name)) return "text";
  return null;
}

async function showPreview(slot, artifact, kind) {
  const body = h("div", { class: "preview-body", text: "loading…" });
  const preview = h(
    "figure",
    { class: `preview preview-${kind}`, "data-testid": "artifact-preview", "data-kind": kind, "data-digest": artifact.digest },
    h("figcaption", { class: "mono", text: artifact.name }),
    body,
  );
  slot.replaceChildren(preview);
  try {
    body.replaceChildren(await previewContent(artifact, kind));
  } catch (error) {
    body.replaceChildren(h("p", { class: "error", text: `cannot preview ${artifact.name}: ${error.message}` }));
  }
}

async function previewContent(artifact, kind) {
  const path = `/api/v1/artifacts/${artifact.digest}`;
  if (kind === "svg" || kind === "png") {
    if (artifact.size > MAX_IMAGE_BYTES) {
      return h("p", { class: "muted", text: `${formatBytes(artifact.size)} is too large to show here; download it` });
    }
    const blob = await api.blob(path);
    const typed = new Blob([blob], { type: kind === "svg" ? "image/svg+xml" : "image/png" });
    return h("img", { src: URL.createObjectURL(typed), alt: artifact.name });
  }
  const response = await api.send(path, { headers: { Range: `bytes=0-${TEXT_PREVIEW_BYTES - 1}` } });
  const text = await response.text();
  const truncated = artifact.size > TEXT_PREVIEW_BYTES;
  const note = truncated
    ? h("p", { class: "muted", text: `first ${formatBytes(TEXT_PREVIEW_BYTES)} of ${formatBytes(artifact.size)}` })
    : null;
  if (kind === "csv") return h("div", {}, csvTable(text, truncated), note);
  return h("div", {}, h("pre", { class: "text-preview", text }), note);
}

/** Renders the first rows of CSV text as a table; a cut-off last line is dropped. */
function csvTable(text, truncated) {
  const lines = text.split(/\r?\n/);
  if (truncated) lines.pop();
  const rows = lines.filter((line) => line.length).slice(0, CSV_PREVIEW_ROWS + 1).map(parseCsvLine);
  const [header = [], ...rest] = rows;
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "csv" },
      h("thead", {}, h("tr", {}, header.map((cell) => h("th", { text: cell })))),
      h("tbody", {}, rest.map((row) => h("tr", {}, row.map((cell) => h("td", { text: cell }))))),
    ),
  );
}

/** Splits one CSV line on commas or semicolons, honouring double quotes. */
function parseCsvLine(line) {
  const separator = line.includes(";") && !line.includes(",") ? ";" : ",";
  const cells = [];
  let cell = "";
  let quoted = false;
  for (let i = 0; i < line.length; i += 1) {
    const char = line[i];
    if (quoted) {
      if (char === '"' && line[i + 1] === '"') {
        cell += '"';
        i += 1;
      } else if (char === '"') quoted = false;
      else cell += char;
    } else if (char === '"') quoted = true;
    else if (char === separator) {
      cells.push(cell);
      cell = "";
    } else cell += char;
  }
  cells.push(cell);
  return cells;
}
