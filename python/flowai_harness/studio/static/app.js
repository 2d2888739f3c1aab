// The shell: navigation, the live state every page shares (threads and pending approvals,
// kept current by /api/stream), and routing to the pages.

import { api, followChanges } from "./api.js";
import { el } from "./ui.js";
import * as chat from "./chat.js";
import * as runs from "./runs.js";
import * as approvals from "./approvals.js";
import * as costs from "./costs.js";
import * as evals from "./evals.js";

const pages = { chat, runs, approvals, costs, evals };

// Shared state, and who wants to hear when it changes.
export const state = {
  status: null,
  agents: [],
  threads: new Map(),
  approvals: new Map(),
  listeners: new Set(),
  changed(kind, value) {
    for (const listener of this.listeners) listener(kind, value);
  },
};

function updateBadge() {
  const pending = [...state.approvals.values()].filter((a) => a.status === "pending").length;
  const badge = document.getElementById("approval-count");
  badge.textContent = String(pending);
  badge.hidden = pending === 0;
}

let cleanup = null;

function route() {
  const [, name = "chat", ...rest] = (location.hash || "#/chat").split("/");
  const page = pages[name] ? name : "chat";
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.dataset.page === page);
  }
  if (cleanup) cleanup();
  const main = document.getElementById("page");
  main.replaceChildren();
  main.dataset.page = page;
  cleanup = pages[page].render(main, { state, arg: rest.map(decodeURIComponent).join("/") }) || null;
}

async function boot() {
  try {
    [state.status, state.agents] = await Promise.all([api.status(), api.agents()]);
  } catch (error) {
    document.getElementById("page").replaceChildren(
      el("div", { class: "error" }, `Studio's API did not answer: ${error.message}`));
    return;
  }
  document.getElementById("meta").replaceChildren(
    el("div", {}, el("span", { class: "muted" }, "tenant "), state.status.tenant),
    el("div", {}, el("span", { class: "muted" }, "mode "), state.status.mode),
  );
  followChanges({
    onSnapshot({ threads, approvals: pending }) {
      state.threads = new Map(threads.map((t) => [t.threadId, t]));
      for (const [id, approval] of state.approvals) {
        if (approval.status === "pending") state.approvals.delete(id);
      }
      for (const approval of pending) state.approvals.set(approval.id, approval);
      updateBadge();
      state.changed("snapshot");
    },
    onThread(thread) {
      state.threads.set(thread.threadId, thread);
      state.changed("thread", thread);
    },
    onApproval(approval) {
      state.approvals.set(approval.id, approval);
      updateBadge();
      state.changed("approval", approval);
    },
  });
  window.addEventListener("hashchange", route);
  route();
}

boot();
