// Costs and latency per run and per agent, as charts. Redrawn when a thread changes.

import { api } from "./api.js";
import { el, barChart, duration, usd } from "./ui.js";

export function render(main, ctx) {
  const body = el("div", { id: "costs" });
  main.append(el("h1", {}, "Costs & latency"),
    el("p", { class: "muted" }, "USD is the engine's estimate for live models (deterministic interpreters cost nothing)."),
    body);
  let pending = null;
  const paint = async () => {
    const { runs, agents } = await api.metrics();
    const recent = runs.slice(-15);
    const label = (r) => `${r.threadId} · ${r.runId}`;
    const totalCost = runs.reduce((sum, r) => sum + (r.costUsd || 0), 0);
    const totalTokens = runs.reduce((sum, r) => sum + (r.totalTokens || 0), 0);
    body.replaceChildren(
      el("div", { class: "cards" },
        el("div", { class: "stat" }, el("span", {}, "runs"), el("strong", {}, runs.length)),
        el("div", { class: "stat" }, el("span", {}, "tokens"), el("strong", {}, totalTokens)),
        el("div", { class: "stat" }, el("span", {}, "cost"), el("strong", {}, usd(totalCost)))),
      el("div", { class: "charts" },
        barChart("Duration per run", recent.map((r) => ({ label: label(r), value: r.durationMs })), duration),
        barChart("Tokens per run", recent.map((r) => ({ label: label(r), value: r.totalTokens }))),
        barChart("Cost per run (USD)", recent.map((r) => ({ label: label(r), value: r.costUsd || 0 })), usd),
        barChart("Model time per agent", agents.map((a) => ({ label: a.agent, value: a.latencyMs })), duration),
        barChart("Tokens per agent", agents.map((a) => ({ label: a.agent, value: a.tokens }))),
        barChart("Cost per agent (USD)", agents.map((a) => ({ label: a.agent, value: a.costUsd || 0 })), usd)),
      el("table", { class: "runs" },
        el("thead", {}, el("tr", {}, ...["agent", "model calls", "tokens", "model time", "cost"].map((h) => el("th", {}, h)))),
        el("tbody", {}, agents.map((a) => el("tr", {}, el("td", {}, a.agent), el("td", {}, a.calls),
          el("td", {}, a.tokens), el("td", {}, duration(a.latencyMs)), el("td", {}, usd(a.costUsd)))))));
  };
  const listener = (kind) => {
    // Coalesce a burst of changes into one redraw.
    if ((kind === "thread" || kind === "snapshot") && !pending) {
      pending = setTimeout(() => { pending = null; paint(); }, 300);
    }
  };
  ctx.state.listeners.add(listener);
  paint();
  return () => {
    ctx.state.listeners.delete(listener);
    clearTimeout(pending);
  };
}
