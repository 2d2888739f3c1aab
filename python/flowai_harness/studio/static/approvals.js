// The approvals inbox, and the approval card the chat shows inline too. A card follows its
// approval in the shared state, so a decision made anywhere (here, another tab, chat-ops,
// the CLI) shows on every card at once.

import { api } from "./api.js";
import { el, json, countdown, time, badge } from "./ui.js";

const APPROVER_KEY = "flowai.studio.approver";

function approverName() {
  return localStorage.getItem(APPROVER_KEY) || "studio-user";
}

export function approvalCard(approval, ctx) {
  const card = el("section", { class: "approval-card", dataset: { approvalId: approval.id } });
  const current = () => ctx.state.approvals.get(approval.id) || approval;
  const clock = el("span", { class: "countdown" });
  const tick = setInterval(() => {
    if (!card.isConnected) clearInterval(tick);
    else clock.textContent = countdown(current().expiresAt);
  }, 1000);

  const approver = el("input", { name: "approver", value: approverName(), size: 14 });
  approver.addEventListener("change", () => localStorage.setItem(APPROVER_KEY, approver.value));
  const feedback = el("textarea", { name: "feedback", rows: 2, placeholder: "feedback (optional)" });
  const partial = el("textarea", {
    name: "partial", rows: 2, placeholder: "revise: the parts to change, as JSON (optional)",
  });
  const message = el("div", { class: "card-message" });
  const decide = (outcome) => async () => {
    let partialValue;
    if (partial.value.trim()) {
      try {
        partialValue = JSON.parse(partial.value);
      } catch (error) {
        message.textContent = `partial is not JSON: ${error.message}`;
        return;
      }
    }
    message.textContent = "sending…";
    for (const button of buttons.querySelectorAll("button")) button.disabled = true;
    try {
      await api.decide(approval.id, {
        outcome,
        approver: approver.value,
        feedback: feedback.value || null,
        partial: partialValue ?? null,
      });
      message.textContent = `${outcome} sent`;
    } catch (error) {
      message.textContent = `${error.code}: ${error.message}`;
      for (const button of buttons.querySelectorAll("button")) button.disabled = false;
    }
  };
  const buttons = el("div", { class: "buttons" },
    el("button", { class: "approve", onclick: decide("approve") }, "Approve"),
    el("button", { class: "reject", onclick: decide("reject") }, "Reject"),
    el("button", { class: "revise", onclick: decide("revise") }, "Revise"),
  );
  const form = el("div", { class: "decide" },
    el("label", {}, "Decide as ", approver), feedback, partial, buttons, message);

  const paint = () => {
    const a = current();
    const required = a.approvalsRequired > 1
      ? el("div", {}, `needs ${a.approvalsRequired} different approvers; approved so far: `,
          a.approvers.length ? a.approvers.join(", ") : "nobody")
      : null;
    const outcome = a.status === "pending" ? null
      : el("div", { class: "outcome" }, badge(a.status),
          a.approver ? ` by ${a.approver}` : "", a.feedback ? ` — ${a.feedback}` : "",
          a.reason ? ` (${a.reason})` : "", a.decidedAt ? ` at ${time(a.decidedAt)}` : "");
    clock.textContent = countdown(a.expiresAt);
    card.classList.toggle("decided", a.status !== "pending");
    card.replaceChildren(...[
      el("header", {},
        el("strong", {}, `${a.kind === "plan" ? "Plan" : "Tool"} approval: `, a.target),
        a.agent ? el("span", { class: "muted" }, ` asked by ${a.agent}`) : null,
        a.status === "pending" ? clock : null),
      el("div", { class: "muted small" },
        "thread ", el("a", { href: `#/runs/${encodeURIComponent(a.threadId)}` }, a.threadId),
        ` · requested ${time(a.requestedAt)} · may decide: ${ctx.state.status?.whoMayDecide ?? ""}`),
      required,
      el("details", { open: true }, el("summary", {}, "payload"), json(a.payload)),
      a.glimpse ? el("details", {}, el("summary", {}, "glimpse"), json(a.glimpse)) : null,
      a.status === "pending" ? form : outcome,
    ].filter(Boolean));
  };
  const listener = (kind, value) => {
    if (kind === "approval" && value.id === approval.id) paint();
  };
  ctx.state.listeners.add(listener);
  paint();
  card.dispose = () => {
    ctx.state.listeners.delete(listener);
    clearInterval(tick);
  };
  return card;
}

export function render(main, ctx) {
  const list = el("div", { class: "approval-list" });
  const decided = el("div", { class: "approval-list" });
  main.append(
    el("h1", {}, "Approvals"),
    el("p", { class: "muted" }, "Everything waiting for a decision in this tenant, across threads."),
    list,
    el("h2", {}, "Decided recently"),
    decided,
  );
  const cards = new Map();
  const paint = () => {
    const all = [...ctx.state.approvals.values()];
    const pending = all.filter((a) => a.status === "pending");
    for (const [id, card] of cards) {
      if (!ctx.state.approvals.has(id)) {
        card.dispose();
        card.remove();
        cards.delete(id);
      }
    }
    for (const approval of pending) {
      if (!cards.has(approval.id)) {
        const card = approvalCard(approval, ctx);
        cards.set(approval.id, card);
        list.append(card);
      }
    }
    list.querySelector(".empty")?.remove();
    if (!pending.length) list.append(el("p", { class: "muted empty" }, "Nothing is waiting."));
    decided.replaceChildren(...all.filter((a) => a.status !== "pending").slice(-10).reverse()
      .map((a) => el("div", { class: "decided-row" }, badge(a.status), ` ${a.kind} ${a.target} `,
        el("a", { href: `#/runs/${encodeURIComponent(a.threadId)}` }, a.threadId),
        a.approver ? ` by ${a.approver}` : "")));
    for (const [id, card] of cards) {
      const a = ctx.state.approvals.get(id);
      if (a && a.status !== "pending") {
        // Keep a decided card in view a moment: it says what happened to it.
        card.classList.add("decided");
      }
    }
  };
  // Decided ones the page has not seen (the snapshot carries only pending ones).
  api.approvals("all").then((all) => {
    for (const a of all) if (!ctx.state.approvals.has(a.id)) ctx.state.approvals.set(a.id, a);
    paint();
  });
  const listener = (kind) => {
    if (kind === "approval" || kind === "snapshot") paint();
  };
  ctx.state.listeners.add(listener);
  paint();
  return () => {
    ctx.state.listeners.delete(listener);
    for (const card of cards.values()) card.dispose();
  };
}
