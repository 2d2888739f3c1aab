// Runs: every thread with its status, agent, cost and duration (filterable), and a thread's
// timeline event by event. The timeline follows the thread live and, when the connection
// drops, resumes after the last seq it showed: nothing is lost and nothing shows twice.
// Where the backend can, each event has "state here" (the thread's folded state right after
// it, in a panel) and "fork from here" (a new thread with the history up to it, opened at once).

import { api, followThread } from "./api.js";
import { el, json, short, time, duration, usd, badge } from "./ui.js";

const STATUSES = ["", "running", "awaiting-approval", "finished", "cancelled", "failed"];

function summary(p) {
  switch (p.type) {
    case "run-start": return `${p.agent}: ${short(p.prompt, 80)}`;
    case "step-start": return `${p.agent} step ${p.step} (${p.model})`;
    case "text": case "reasoning": return `${p.agent}: ${short(p.text)}`;
    case "tool-invocation":
      return p.state === "call" ? `${p.toolName}(${short(p.args, 70)})`
        : `${p.toolName} → ${p.isError ? "ERROR " : ""}${short(p.result, 70)}`;
    case "tool-agent":
      return p.targetAgent ? `${p.agent} ${p.state === "call" ? "→" : "←"} ${p.targetAgent}`
        : `${p.agentName} ${p.state}`;
    case "model-response": return `${p.agent} ${p.model}: ${p.stopReason}, ${p.usage?.totalTokens ?? 0} tokens, ${p.latencyMs} ms`;
    case "approval-required": return `${p.data.kind} ${p.data.target} needs approval`;
    case "approval-decision": return `${p.data.outcome?.outcome}${p.data.approver ? " by " + p.data.approver : ""}`;
    case "plan-status-change": return `${p.data.planId}: ${p.data.from ?? "new"} → ${p.data.to}`;
    case "finish": return `${p.finishReason}, ${p.usage?.totalTokens ?? 0} tokens`;
    case "error": return `${p.error?.code}: ${p.error?.message}`;
    default: {
      const { type, ...rest } = p;
      return short(rest);
    }
  }
}

function timeline(main, ctx, threadId) {
  const head = el("div", { class: "thread-head" });
  const connection = el("span", { class: "connection", id: "timeline-connection" });
  const rows = el("tbody", { id: "timeline" });
  const panel = el("div", { class: "state-panel", id: "state-panel", hidden: true });
  const capabilities = new Set(ctx.state.status?.capabilities || []);
  const canState = capabilities.has("replay-at");
  const canFork = capabilities.has("fork");
  const showPanel = (title, ...body) => {
    panel.hidden = false;
    panel.replaceChildren(el("div", { class: "panel-head" }, el("strong", {}, title),
      el("button", { class: "close", onclick: () => (panel.hidden = true) }, "close")), ...body);
    // The row clicked may be far down a long timeline; the panel is above it.
    panel.scrollIntoView({ block: "start" });
  };
  const stateHere = async (seq) => {
    try {
      const found = await api.stateAt(threadId, seq);
      panel.dataset.seq = String(seq);
      showPanel(`State after event ${seq}`, el("p", {}, "status ", badge(found.status)), json(found.state));
    } catch (error) {
      showPanel(`State after event ${seq}`, el("div", { class: "error" }, `${error.code}: ${error.message}`));
    }
  };
  const forkHere = async (seq) => {
    try {
      const forked = await api.fork(threadId, seq);
      location.hash = `#/runs/${encodeURIComponent(forked.threadId)}`;
    } catch (error) {
      showPanel(`Fork from event ${seq}`, el("div", { class: "error fork-error" }, `${error.code}: ${error.message}`));
    }
  };
  const actions = (seq) => {
    const buttons = [];
    const button = (cls, label, act) => el("button", { class: `small ${cls}`, onclick: (e) => {
      e.stopPropagation();
      act(seq);
    } }, label);
    if (canState) buttons.push(button("state-here", "state here", stateHere));
    if (canFork) buttons.push(button("fork-here", "fork from here", forkHere));
    return el("td", { class: "actions" }, buttons);
  };
  main.append(
    el("p", {}, el("a", { href: "#/runs" }, "← all runs")),
    el("div", { class: "chat-head" }, el("h1", {}, "Timeline"), connection,
      el("a", { href: `#/chat/${encodeURIComponent(threadId)}`, class: "button" }, "Open in chat")),
    head,
    panel,
    el("table", { class: "timeline" },
      el("thead", {}, el("tr", {}, el("th", {}, "seq"), el("th", {}, "time"), el("th", {}, "type"), el("th", {}, "summary"), el("th", {}, ""))),
      rows));
  const paintHead = () => {
    const t = ctx.state.threads.get(threadId);
    if (!t) return;
    head.replaceChildren(el("div", { class: "cards" },
      el("div", { class: "stat" }, el("span", {}, "thread"), el("strong", {}, threadId)),
      el("div", { class: "stat" }, el("span", {}, "status"), badge(t.status)),
      el("div", { class: "stat" }, el("span", {}, "agent"), el("strong", {}, t.agent || "–")),
      el("div", { class: "stat" }, el("span", {}, "runs"), el("strong", {}, t.runs)),
      el("div", { class: "stat" }, el("span", {}, "tokens"), el("strong", {}, t.totalTokens)),
      el("div", { class: "stat" }, el("span", {}, "cost"), el("strong", {}, usd(t.costUsd))),
      el("div", { class: "stat" }, el("span", {}, "duration"), el("strong", {}, duration(t.durationMs)))));
  };
  const follower = followThread(threadId, 0, {
    onLogged(envelope) {
      const p = envelope.payload;
      const detail = el("tr", { class: "detail", hidden: true }, el("td", { colspan: 5 }, json(envelope)));
      const row = el("tr", { class: `event type-${p.type}`, dataset: { seq: envelope.seq } },
        el("td", { class: "seq" }, envelope.seq), el("td", { class: "time" }, time(envelope.ts)),
        el("td", {}, el("code", {}, p.type)), el("td", {}, summary(p)), actions(envelope.seq));
      row.addEventListener("click", () => (detail.hidden = !detail.hidden));
      rows.append(row, detail);
    },
    onState(s, reconnects) {
      connection.dataset.state = s;
      connection.dataset.reconnects = String(reconnects);
      connection.textContent = s === "live"
        ? `● live${reconnects ? ` (reconnected ${reconnects}×)` : ""}` : "reconnecting…";
    },
  });
  const listener = (kind, value) => {
    if (kind === "snapshot" || (kind === "thread" && value.threadId === threadId)) paintHead();
  };
  ctx.state.listeners.add(listener);
  paintHead();
  return () => {
    ctx.state.listeners.delete(listener);
    follower.close();
  };
}

export function render(main, ctx) {
  if (ctx.arg) return timeline(main, ctx, ctx.arg);
  const status = el("select", { name: "status" }, STATUSES.map((s) => el("option", { value: s }, s || "any status")));
  const agent = el("select", { name: "agent" }, el("option", { value: "" }, "any agent"),
    ctx.state.agents.map((a) => el("option", { value: a.name }, a.name)));
  const search = el("input", { name: "q", type: "search", placeholder: "thread or prompt contains…" });
  const rows = el("tbody", { id: "threads" });
  main.append(
    el("h1", {}, "Runs"),
    el("div", { class: "filters" }, status, agent, search),
    el("table", { class: "runs" },
      el("thead", {}, el("tr", {}, ...["thread", "status", "agent", "runs", "tokens", "cost", "duration", "updated"]
        .map((h) => el("th", {}, h)))),
      rows));
  const paint = () => {
    const q = search.value.toLowerCase();
    const threads = [...ctx.state.threads.values()]
      .filter((t) => !status.value || t.status === status.value)
      .filter((t) => !agent.value || t.agent === agent.value)
      .filter((t) => !q || `${t.threadId} ${t.prompt}`.toLowerCase().includes(q))
      .sort((a, b) => (b.updatedAt || 0) - (a.updatedAt || 0));
    rows.replaceChildren(...threads.map((t) => el("tr", { dataset: { threadId: t.threadId } },
      el("td", {}, el("a", { href: `#/runs/${encodeURIComponent(t.threadId)}` }, t.threadId),
        el("div", { class: "muted small" }, short(t.prompt, 70))),
      el("td", {}, badge(t.status)), el("td", {}, t.agent || "–"), el("td", {}, t.runs),
      el("td", {}, t.totalTokens), el("td", {}, usd(t.costUsd)), el("td", {}, duration(t.durationMs)),
      el("td", {}, time(t.updatedAt)))));
    if (!threads.length) rows.append(el("tr", {}, el("td", { colspan: 8, class: "muted" }, "No runs match.")));
  };
  for (const input of [status, agent, search]) input.addEventListener("input", paint);
  const listener = (kind) => {
    if (kind === "thread" || kind === "snapshot") paint();
  };
  ctx.state.listeners.add(listener);
  paint();
  return () => ctx.state.listeners.delete(listener);
}
