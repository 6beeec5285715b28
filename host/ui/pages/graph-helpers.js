// Helpers shared by the lineage, compare and models pages and the lineage graph: the
// stylesheet, the ready mark, the error box, links and downloads.

import { getToken } from "../api.js";
import { h } from "../format.js";

const STYLESHEET_URL = "/ui/pages/graph.css";

let stylesLoaded = null;

/**
 * Adds the stylesheet of these pages to the document once, and returns a promise that settles
 * when it has loaded or failed. The graph waits for it, because it measures its laid-out size.
 */
export function ensureGraphStyles() {
  if (!stylesLoaded) {
    const link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = STYLESHEET_URL;
    stylesLoaded = new Promise((resolve) => {
      link.addEventListener("load", resolve);
      link.addEventListener("error", resolve);
    });
    document.head.append(link);
  }
  return stylesLoaded;
}

/** Marks the page as loaded for the tests: `document.body.dataset.ready`. */
export function markReady(page) {
  document.body.dataset.ready = page;
}

/** Removes the loaded mark, for a page that reloads its data in place. */
export function clearReady() {
  delete document.body.dataset.ready;
}

/**
 * Shows `error` in the page's error box `[data-testid=error]`, created at the top of `root`
 * when missing. An error from the API shows its message and each detail.
 */
export function showError(root, error) {
  let box = root.querySelector("[data-testid=error]");
  if (!box) {
    box = h("div", { class: "error", role: "alert", "data-testid": "error" });
    root.prepend(box);
  }
  box.textContent = errorText(error);
  return box;
}

/** Removes the error box from `root`, if any. */
export function clearError(root) {
  root.querySelector("[data-testid=error]")?.remove();
}

/** Returns the text of an error: its message, with the problems of the API's details. */
export function errorText(error) {
  if (typeof error === "string") {
    return error;
  }
  const message = error?.message || String(error);
  const details = (error?.details ?? [])
    .filter((detail) => detail.problem && !message.includes(detail.problem))
    .map((detail) => `${detail.field}: ${detail.problem}`);
  return details.length ? `${message} (${details.join("; ")})` : message;
}

/**
 * Returns a short form of a UUID that keeps runs distinct: its first 8 and last 4 characters.
 * Run ids are UUIDv7, whose first characters are a timestamp shared by runs started close
 * together.
 */
export function shortUuid(id) {
  return id && id.length > 16 ? `${id.slice(0, 8)}…${id.slice(-4)}` : (id ?? "—");
}

/** Returns a link inside the app; the shell's router follows it without a reload. */
export function pageLink(url, text, attributes = {}) {
  return h("a", { href: url, ...attributes }, text);
}

/**
 * Marks the page as loaded unless a navigation to another page started meanwhile, and returns
 * whether it did.
 */
export function finish(ctx, page) {
  if (ctx.signal?.aborted) {
    return false;
  }
  markReady(page);
  return true;
}

/** Returns whether `error` only means that the page was left while it loaded. */
export function isAbort(ctx, error) {
  return error?.name === "AbortError" || Boolean(ctx.signal?.aborted);
}

/**
 * Returns a download link for an artifact. A click downloads the content through `ctx.api`,
 * which sends the session's token, because a plain link cannot send an Authorization header.
 */
export function downloadLink(ctx, digest, fileName, text = "download") {
  const url = `/api/v1/artifacts/${digest}`;
  return h(
    "a",
    {
      href: url,
      download: fileName || digest,
      "data-testid": "artifact-download",
      onclick: (event) => {
        if (!getToken()) {
          return;
        }
        event.preventDefault();
        downloadWithToken(ctx, url, fileName || digest, event.currentTarget);
      },
    },
    text,
  );
}

async function downloadWithToken(ctx, url, fileName, link) {
  try {
    const blobUrl = URL.createObjectURL(await ctx.api.blob(url));
    const anchor = h("a", { href: blobUrl, download: fileName });
    document.body.append(anchor);
    anchor.click();
    anchor.remove();
    setTimeout(() => URL.revokeObjectURL(blobUrl), 60_000);
  } catch (error) {
    link.title = errorText(error);
    link.classList.add("failed");
  }
}

/** Runs `task` on each item with at most `limit` running at once, returning the results. */
export async function mapLimited(items, limit, task) {
  const results = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next;
      next += 1;
      results[index] = await task(items[index], index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
