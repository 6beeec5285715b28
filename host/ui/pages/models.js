// Models pages: /models lists the registered models, /models/{name} shows one model with its
// versions, aliases, pending promotions (with an approve action for approvers) and audit log.

import { segment } from "../api.js";
import { formatTime, h } from "../format.js";
import { lineageUrl } from "../components/graph.js";
import {
  clearError,
  clearReady,
  ensureGraphStyles,
  errorText,
  finish,
  isAbort,
  pageLink,
  shortUuid,
  showError,
} from "./graph-helpers.js";

/** Models and versions fetched per page. */
const PAGE_SIZE = 100;

/** Audit entries per page of the audit log. */
const AUDIT_PAGE_SIZE = 50;

/** Renders `/models` or `/models/{name}` into `root`. */
export async function render(root, route, ctx) {
  ensureGraphStyles();
  const page = h("section", { class: "ug-page models-page" });
  root.replaceChildren(page);
  const name = route.segments[1];
  const pageName = name === undefined ? "models" : "model";
  try {
    if (name === undefined) {
      await renderList(page, ctx);
    } else {
      await renderModel(page, name, ctx);
    }
  } catch (error) {
    if (isAbort(ctx, error)) {
      return;
    }
    showError(page, error);
  }
  finish(ctx, pageName);
}

/** Returns the URL of a model's page. */
function modelUrl(name) {
  return `/models/${segment(name)}`;
}

/** Lists the registered models, one page of the API at a time with a button for the next. */
async function renderList(page, ctx) {
  ctx.setTitle("Models");
  page.append(h("h1", {}, "Registered models"));
  const body = h("tbody", {});
  const table = h(
    "table",
    { class: "ug-table", "data-testid": "models-list" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ["Model", "Description", "Latest version", "Aliases", "Updated"].map((title) =>
          h("th", {}, title),
        ),
      ),
    ),
    body,
  );
  const pager = h("div", { class: "ug-pager" });
  page.append(table, pager);

  const loadPage = async (token) => {
    const list = await ctx.api.get(
      "/api/v1/models",
      { page_size: PAGE_SIZE, page_token: token },
      { signal: ctx.signal },
    );
    body.append(...list.models.map(modelRow));
    pager.replaceChildren();
    if (list.next_page_token) {
      pager.append(moreButton("more models", () => loadPage(list.next_page_token), page));
    }
    return list;
  };
  const first = await loadPage(null);
  if (!first.models.length) {
    table.replaceWith(
      h(
        "div",
        { "data-testid": "models-list" },
        h(
          "p",
          { class: "muted" },
          "No model is registered yet. Register one with ",
          h("code", {}, "runledger models create NAME"),
          ", then add versions with ",
          h("code", {}, "runledger models register NAME --run RUN --artifact STEP.OUTPUT"),
          ".",
        ),
      ),
    );
  }
}

function modelRow(model) {
  return h(
    "tr",
    { "data-model-row": model.name },
    h("td", {}, pageLink(modelUrl(model.name), model.name, { "data-model": model.name })),
    h("td", {}, model.description || h("span", { class: "muted" }, "—")),
    h("td", {}, model.latest_version ?? "—"),
    h("td", {}, aliasBadges(model.aliases)),
    h("td", {}, formatTime(model.updated_at)),
  );
}

function aliasBadges(aliases) {
  const entries = Object.entries(aliases);
  if (!entries.length) {
    return h("span", { class: "muted" }, "none");
  }
  return entries.map(([alias, version]) =>
    h("span", { class: "ug-badge" }, `${alias}: version ${version}`),
  );
}

/** Returns a button that runs `load`, showing its error in `page` if it fails. */
function moreButton(text, load, page) {
  const button = h("button", { type: "button" }, text);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await load();
    } catch (error) {
      showError(page, error);
      button.disabled = false;
    }
  });
  return button;
}

/** Shows one model; an approval reloads the page's data in place. */
async function renderModel(page, name, ctx) {
  ctx.setTitle(`Model ${name}`);
  page.append(h("p", {}, pageLink("/models", "← all models")), h("h1", {}, name));
  const content = h("div", {});
  page.append(content);
  await loadModel(page, content, name, ctx);
}

/** Loads the model's data and fills `content`. */
async function loadModel(page, content, name, ctx) {
  const path = `/api/v1/models/${segment(name)}`;
  const options = { signal: ctx.signal };
  let model;
  try {
    model = await ctx.api.get(path, {}, options);
  } catch (error) {
    if (error.status === 404) {
      error.message = `${error.message}: check the name or go back to the models list`;
    }
    throw error;
  }
  const [versions, pending] = await Promise.all([
    ctx.api.get(`${path}/versions`, { page_size: PAGE_SIZE }, options),
    ctx.api.get(`${path}/promotions`, { status: "pending" }, options),
  ]);

  const reload = () => reloadModel(page, content, name, ctx);
  const audit = h("div", {});
  content.replaceChildren(
    modelSummary(model),
    h("h2", {}, "Aliases"),
    aliasesTable(model),
    h("h2", {}, "Pending promotions"),
    pendingPromotions(pending.promotions, name, page, ctx, reload),
    h("h2", {}, "Versions"),
    versionsSection(versions, path, page, ctx),
    h("h2", {}, "Audit log"),
    audit,
  );
  await loadAudit(audit, path, null, page, ctx);
}

/** Reloads the model after an approval, marking the page as loading until it is redrawn. */
async function reloadModel(page, content, name, ctx) {
  clearReady();
  try {
    await loadModel(page, content, name, ctx);
  } catch (error) {
    if (isAbort(ctx, error)) {
      return;
    }
    showError(page, error);
  }
  finish(ctx, "model");
}

function modelSummary(model) {
  const tags = Object.entries(model.tags);
  const policies = Object.entries(model.policies);
  const validators = model.validators.map((spec) => spec.plugin).join(", ");
  const list = h(
    "dl",
    { class: "ug-details", "data-testid": "model-summary" },
    h("dt", {}, "Description"),
    h("dd", {}, model.description || "—"),
    h("dt", {}, "Created"),
    h("dd", {}, `${formatTime(model.created_at)} by ${model.created_by}`),
    h("dt", {}, "Latest version"),
    h("dd", {}, model.latest_version ?? "none"),
    h("dt", {}, "Tags"),
    h("dd", {}, tags.length ? tags.map(([k, v]) => `${k}=${v}`).join(", ") : "none"),
    h("dt", {}, "Validators"),
    h("dd", {}, validators || "none"),
    h("dt", {}, "Policies"),
    h(
      "dd",
      {},
      policies.length
        ? policies
            .map(([alias, specs]) => `${alias}: ${specs.map((spec) => spec.plugin).join(", ")}`)
            .join("; ")
        : "none: every alias moves at once",
    ),
  );
  return list;
}

function aliasesTable(model) {
  const entries = Object.entries(model.aliases);
  if (!entries.length) {
    return h(
      "p",
      { class: "muted", "data-testid": "aliases" },
      "No alias points at a version yet.",
    );
  }
  return h(
    "table",
    { class: "ug-table", "data-testid": "aliases" },
    h("thead", {}, h("tr", {}, h("th", {}, "Alias"), h("th", {}, "Version"))),
    h(
      "tbody",
      {},
      entries.map(([alias, version]) =>
        h(
          "tr",
          { "data-alias": alias, "data-version": version },
          h("td", {}, alias),
          h("td", {}, String(version)),
        ),
      ),
    ),
  );
}

/** Lists the promotions that wait for approvals, each with an approve form for approvers. */
function pendingPromotions(promotions, name, page, ctx, reload) {
  const container = h("div", { "data-testid": "pending-promotions" });
  if (!promotions.length) {
    container.append(h("p", { class: "muted" }, "No promotion waits for approvals."));
    return container;
  }
  for (const promotion of promotions) {
    container.append(promotionItem(promotion, name, page, ctx, reload));
  }
  return container;
}

function promotionItem(promotion, name, page, ctx, reload) {
  const waiting = promotion.needed ?? [];
  const item = h(
    "div",
    {
      class: "ug-promotion",
      "data-promotion-id": promotion.id,
      "data-alias": promotion.alias,
      "data-version": promotion.version,
    },
    h("strong", {}, `${promotion.alias} → version ${promotion.version}`),
    h(
      "span",
      { class: "muted" },
      ` requested by ${promotion.requester} at ${formatTime(promotion.created_at)}`,
    ),
    h(
      "div",
      { "data-testid": "approvals-given" },
      `Approvals given (${promotion.approvals.length}):`,
      promotion.approvals.length
        ? h(
            "ul",
            {},
            promotion.approvals.map((approval) =>
              h(
                "li",
                { "data-approver": approval.approver },
                `${approval.approver} (${approval.role}) at ${formatTime(approval.created_at)}`,
                approval.comment ? `: “${approval.comment}”` : "",
              ),
            ),
          )
        : h("span", { class: "muted" }, " none yet"),
    ),
    h(
      "div",
      { "data-testid": "approvals-needed" },
      "Still needed:",
      waiting.length
        ? h(
            "ul",
            {},
            waiting.map((need) =>
              h(
                "li",
                { "data-needed-count": need.count, "data-needed-role": need.role },
                `${need.count} more approval(s) by role ${need.role} or higher ` +
                  `(${need.plugin}): ${need.reason}`,
              ),
            ),
          )
        : h("span", { class: "muted" }, " approvals that the alias's policies ask for"),
    ),
  );
  if (ctx.hasRole?.("approver")) {
    item.append(approveForm(promotion, name, page, ctx, reload));
  }
  return item;
}

/** Returns the comment box and approve button of a pending promotion. */
function approveForm(promotion, name, page, ctx, reload) {
  const comment = h("input", {
    type: "text",
    name: "comment",
    maxlength: 2000,
    "data-testid": "approve-comment",
    placeholder: "comment (optional)",
    "aria-label": "approval comment",
  });
  const button = h(
    "button",
    { type: "button", "data-testid": "approve" },
    `Approve version ${promotion.version} as ${promotion.alias}`,
  );
  button.addEventListener("click", async () => {
    button.disabled = true;
    clearError(page);
    let outcome;
    try {
      outcome = await ctx.api.post(
        `/api/v1/models/${segment(name)}/versions/${promotion.version}/approvals`,
        { alias: promotion.alias, comment: comment.value },
      );
    } catch (error) {
      showError(
        page,
        `approving ${name} version ${promotion.version} as ${promotion.alias} failed: ` +
          errorText(error),
      );
      button.disabled = false;
      return;
    }
    showNotice(
      page,
      outcome.status === "completed"
        ? `approved: ${outcome.alias} now points at version ${outcome.version}`
        : `approval recorded: the promotion of version ${outcome.version} ` +
            `to ${outcome.alias} still waits`,
    );
    await reload();
  });
  return h("div", { class: "ug-approve" }, comment, button);
}

/** Shows a confirmation at the top of the page, replacing the previous one. */
function showNotice(page, text) {
  page.querySelector("[data-testid=notice]")?.remove();
  page.prepend(h("p", { class: "ug-notice", role: "status", "data-testid": "notice" }, text));
}

/** Lists the versions, newest first, with a button for the next page. */
function versionsSection(versions, path, page, ctx) {
  const body = h("tbody", {}, versions.versions.map(versionRow));
  const table = h(
    "table",
    { class: "ug-table", "data-testid": "versions" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ["Version", "Aliases", "Run", "Artifact", "Status", "Validations", "Created"].map((title) =>
          h("th", {}, title),
        ),
      ),
    ),
    body,
  );
  const pager = h("div", { class: "ug-pager" });
  const addNext = (token) => {
    pager.replaceChildren();
    if (!token) {
      return;
    }
    pager.append(
      moreButton(
        "older versions",
        async () => {
          const next = await ctx.api.get(
            `${path}/versions`,
            { page_size: PAGE_SIZE, page_token: token },
            { signal: ctx.signal },
          );
          body.append(...next.versions.map(versionRow));
          addNext(next.next_page_token);
        },
        page,
      ),
    );
  };
  addNext(versions.next_page_token);
  if (!versions.versions.length) {
    return h("p", { class: "muted", "data-testid": "versions" }, "No version yet.");
  }
  return h("div", {}, table, pager);
}

function versionRow(version) {
  const run = version.run_id
    ? pageLink(`/runs/${segment(version.run_id)}`, shortUuid(version.run_id), {
        title: version.run_id,
      })
    : h("span", { class: "muted" }, "run deleted");
  const artifact = h(
    "span",
    {},
    version.artifact_name,
    " ",
    pageLink(
      lineageUrl("artifact", version.artifact_digest),
      h("code", {}, version.artifact_digest.slice(0, 12)),
      { title: `lineage of ${version.artifact_digest}` },
    ),
  );
  return h(
    "tr",
    { "data-version": version.version },
    h("td", {}, String(version.version)),
    h(
      "td",
      {},
      version.aliases.map((alias) => h("span", { class: "ug-badge" }, alias)),
    ),
    h("td", {}, run),
    h("td", {}, artifact),
    h("td", {}, version.status),
    h("td", {}, validationBadge(version.validations)),
    h("td", {}, `${formatTime(version.created_at)} by ${version.created_by}`),
  );
}

/**
 * Summarises a version's validations: an error, failed blocking checks, failed warnings, or
 * passed. The badge's title lists each failed check.
 */
function validationBadge(validations) {
  if (!validations.length) {
    return h("span", { class: "ug-badge", "data-validations": "none" }, "none");
  }
  const errors = validations.filter((validation) => validation.error);
  const checks = validations.flatMap((validation) => validation.checks);
  const failed = checks.filter((check) => !check.passed);
  const blocking = failed.filter((check) => check.severity === "blocking");
  const title = [
    ...errors.map((validation) => `${validation.plugin}: ${validation.error}`),
    ...failed.map((check) => `${check.name} (${check.severity}): ${check.message}`),
  ].join("\n");
  if (errors.length) {
    return h(
      "span",
      { class: "ug-badge bad", "data-validations": "error", title },
      `${errors.length} failed to run`,
    );
  }
  if (blocking.length) {
    return h(
      "span",
      { class: "ug-badge bad", "data-validations": "failed", title },
      `${blocking.length} of ${checks.length} checks failed`,
    );
  }
  if (failed.length) {
    return h(
      "span",
      { class: "ug-badge warn", "data-validations": "warning", title },
      `${failed.length} warnings`,
    );
  }
  return h(
    "span",
    { class: "ug-badge ok", "data-validations": "passed" },
    `${checks.length} checks passed`,
  );
}

/** Shows one page of the audit log, oldest first, with buttons to page forward and back. */
async function loadAudit(container, path, afterSeq, page, ctx, previous = []) {
  const audit = await ctx.api.get(
    `${path}/audit`,
    { limit: AUDIT_PAGE_SIZE, after_seq: afterSeq },
    { signal: ctx.signal },
  );
  const rows = audit.entries.map((entry) =>
    h(
      "tr",
      { "data-seq": entry.seq, "data-action": entry.action },
      h("td", {}, String(entry.seq)),
      h("td", {}, formatTime(entry.at)),
      h("td", {}, entry.actor),
      h("td", {}, entry.action),
      h("td", {}, entry.version ?? "—"),
      h("td", {}, entry.alias ?? "—"),
      h("td", {}, h("code", {}, auditDetail(entry.detail))),
    ),
  );
  const table = h(
    "table",
    { class: "ug-table", "data-testid": "audit-log" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ["Seq", "Time", "Actor", "Action", "Version", "Alias", "Detail"].map((title) =>
          h("th", {}, title),
        ),
      ),
    ),
    h("tbody", {}, rows),
  );

  const pager = h("div", { class: "ug-pager" });
  if (previous.length) {
    const back = previous.slice(0, -1);
    pager.append(
      moreButton(
        "previous entries",
        () => loadAudit(container, path, previous[previous.length - 1], page, ctx, back),
        page,
      ),
    );
  }
  if (audit.next_after_seq !== null) {
    pager.append(
      moreButton(
        "next entries",
        () => loadAudit(container, path, audit.next_after_seq, page, ctx, [...previous, afterSeq]),
        page,
      ),
    );
  }
  container.replaceChildren(
    audit.entries.length
      ? table
      : h("p", { class: "muted", "data-testid": "audit-log" }, "No audit entry yet."),
    pager,
  );
}

/** Formats an entry's detail object compactly: `key=value` pairs, JSON for nested values. */
function auditDetail(detail) {
  if (!detail || typeof detail !== "object") {
    return detail === null || detail === undefined ? "" : String(detail);
  }
  return Object.entries(detail)
    .map(([key, value]) => `${key}=${typeof value === "object" ? JSON.stringify(value) : value}`)
    .join(" ");
}
