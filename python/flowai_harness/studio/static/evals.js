// Evals: run a suite (the ones Studio was started with, --evals), watch it over SSE, its
// results per test case and sample, the pass rate / pass@k chart (the server draws it, the
// same SVG as the HTML report), two runs compared, and the thread of any sample in Runs.

import { api, followEval } from "./api.js";
import { el, time, duration, usd, badge, short } from "./ui.js";

const pct = (v) => (typeof v === "number" ? `${Math.round(v * 100)}%` : "–");
const score = (v) => (typeof v === "number" ? v.toFixed(2) : "–");
const runLink = (id) => el("a", { href: `#/evals/${encodeURIComponent(id)}` }, id);

function overview(main) {
  const suite = el("select", { name: "suite" });
  const start = el("button", { class: "primary", id: "run-eval" }, "Run suite");
  const message = el("div", { class: "form-error" });
  const rows = el("tbody", { id: "eval-runs" });
  const a = el("select", { name: "compare-a" });
  const b = el("select", { name: "compare-b" });
  const go = el("button", { id: "compare" }, "Compare");
  main.append(
    el("h1", {}, "Evals"),
    el("div", { class: "filters" }, suite, start), message,
    el("h2", {}, "Runs"),
    el("table", { class: "runs" },
      el("thead", {}, el("tr", {}, ...["run", "suite", "status", "samples", "pass rate", "score", "cost", "started"]
        .map((h) => el("th", {}, h)))), rows),
    el("h2", {}, "Compare two runs"),
    el("div", { class: "filters" }, a, el("span", { class: "muted" }, "→"), b, go));
  const paint = async () => {
    const { suites, runs } = await api.evals();
    if (!suite.options.length) {
      suite.replaceChildren(...suites.map((s) => el("option", { value: s.name },
        `${s.name} (${s.testCases.length} cases × ${s.samplesPerCase})`)));
      start.disabled = !suites.length;
      if (!suites.length) message.textContent = "No suites: start Studio with --evals module:attr.";
    }
    rows.replaceChildren(...runs.map((r) => el("tr", { dataset: { runId: r.runId } },
      el("td", {}, runLink(r.runId)), el("td", {}, r.suite), el("td", {}, badge(r.status)),
      el("td", {}, `${r.samplesDone}/${r.samplesTotal}`), el("td", {}, pct(r.passRate)),
      el("td", {}, score(r.aggregateScore)), el("td", {}, usd(r.costUsd)), el("td", {}, time(r.startedAt)))));
    if (!runs.length) rows.append(el("tr", {}, el("td", { colspan: 8, class: "muted" }, "No eval runs yet.")));
    const done = runs.filter((r) => r.status === "completed");
    for (const [select, pick] of [[a, 1], [b, 0]]) {
      const kept = select.value;
      select.replaceChildren(...done.map((r) => el("option", { value: r.runId }, `${r.suite} · ${r.runId}`)));
      select.value = kept || done[Math.min(pick, done.length - 1)]?.runId || "";
    }
    go.disabled = done.length < 2;
  };
  start.addEventListener("click", async () => {
    message.textContent = "";
    try {
      const { runId } = await api.startEval(suite.value);
      location.hash = `#/evals/${encodeURIComponent(runId)}`;
    } catch (error) {
      message.textContent = `${error.code}: ${error.message}`;
    }
  });
  go.addEventListener("click", () => {
    location.hash = `#/evals/compare/${encodeURIComponent(a.value)}/${encodeURIComponent(b.value)}`;
  });
  paint();
}

function sampleRows(c) {
  return c.samples.map((s) => el("tr", { class: s.passed ? "sample pass" : "sample fail",
    dataset: { case: c.testCaseId, sample: s.sampleIndex, threadId: s.threadId } },
  el("td", {}, `${c.testCaseId} #${s.sampleIndex}`),
  el("td", {}, badge(s.passed ? "pass" : "fail")), el("td", {}, score(s.score)),
  el("td", {}, Object.entries(s.scorers).map(([k, v]) => `${k} ${score(v)}`).join(", ")),
  el("td", {}, el("code", {}, s.trajectory.join(" › ") || "–")),
  el("td", {}, duration(s.durationMs)),
  el("td", {}, s.error ? short(s.error, 60) : ""),
  el("td", {}, el("a", { href: `#/runs/${encodeURIComponent(s.threadId)}`, class: "open-thread" }, "open thread"))));
}

function detail(main, runId) {
  const head = el("div", { id: "eval-head" });
  const progress = el("progress", { id: "eval-progress", max: 1, value: 0 });
  const state = el("span", { class: "connection", id: "eval-state" });
  const cancel = el("button", { class: "cancel", id: "cancel-eval", hidden: true }, "Cancel");
  const chart = el("figure", { class: "chart-box", id: "eval-chart" });
  const cases = el("tbody", { id: "eval-cases" });
  const samples = el("tbody", { id: "eval-samples" });
  main.append(
    el("p", {}, el("a", { href: "#/evals" }, "← all evals")),
    el("div", { class: "chat-head" }, el("h1", {}, "Eval run"), progress, state, cancel),
    head,
    el("h2", {}, "Pass rate and pass@k"), chart,
    el("h2", {}, "Test cases"),
    el("table", { class: "runs" }, el("thead", {}, el("tr", {},
      ...["test case", "result", "score", "pass rate", "pass@k", "input"].map((h) => el("th", {}, h)))), cases),
    el("h2", {}, "Samples"),
    el("table", { class: "runs" }, el("thead", {}, el("tr", {},
      ...["sample", "result", "score", "scorers", "trajectory", "time", "error", ""].map((h) => el("th", {}, h)))), samples));
  cancel.addEventListener("click", () => api.cancelEval(runId).catch(() => {}));
  let seen = 0;
  const paint = async () => {
    const [run, svg] = await Promise.all([api.evalRun(runId), api.evalChart(runId)]);
    head.replaceChildren(el("div", { class: "cards" },
      el("div", { class: "stat" }, el("span", {}, "suite"), el("strong", {}, run.suite)),
      el("div", { class: "stat" }, el("span", {}, "status"), badge(run.status)),
      el("div", { class: "stat" }, el("span", {}, "samples"), el("strong", {}, `${run.samplesDone}/${run.samplesTotal}`)),
      el("div", { class: "stat" }, el("span", {}, "pass rate"), el("strong", {}, `${pct(run.passRate)} (needs ${pct(run.suiteInfo.minPassRate)})`)),
      el("div", { class: "stat" }, el("span", {}, "verdict"), el("strong", { id: "eval-verdict" },
        run.passed === null ? "–" : run.passed ? "PASS" : "FAIL")),
      el("div", { class: "stat" }, el("span", {}, "cost"), el("strong", {}, usd(run.costUsd)))),
    ...(run.error ? [el("div", { class: "error" }, run.error)] : []));
    progress.max = run.samplesTotal;
    progress.value = run.samplesDone;
    cancel.hidden = run.status !== "running";
    // The server's SVG (the HTML report's chart, every text escaped there).
    chart.innerHTML = run.testCases.length ? svg : "<p class='muted'>no test case has finished yet</p>";
    chart.dataset.cases = String(run.testCases.length);
    cases.replaceChildren(...run.testCases.map((c) => el("tr", { dataset: { case: c.testCaseId } },
      el("td", {}, c.testCaseId), el("td", {}, badge(c.passed ? "pass" : "fail")), el("td", {}, score(c.score)),
      el("td", {}, pct(c.passRate)),
      el("td", {}, Object.entries(c.passAtK).map(([k, v]) => `@${k} ${score(v)}`).join("  ")),
      el("td", {}, el("code", {}, short(c.input ?? "", 60))))));
    // Failing samples first: they are what one opens.
    samples.replaceChildren(...run.testCases.flatMap(sampleRows)
      .sort((x, y) => Number(x.classList.contains("pass")) - Number(y.classList.contains("pass"))));
  };
  const follower = followEval(runId, {
    onEnvelope(envelope) {
      seen = envelope.sequence + 1;
      state.textContent = `● ${envelope.type}`;
      if (envelope.type === "sampleCompleted") progress.value = Number(progress.value) + 1;
      if (["testCaseCompleted", "evalCompleted", "evalFailed", "evalCancelled"].includes(envelope.type)) paint();
    },
    onEnd(run) {
      state.textContent = `${run.status} (${seen} events)`;
      state.dataset.state = run.status;
      paint();
    },
  });
  paint();
  return () => follower.close();
}

function comparison(main, a, b) {
  const body = el("div", { id: "eval-compare" });
  main.append(el("p", {}, el("a", { href: "#/evals" }, "← all evals")), el("h1", {}, "Compare eval runs"), body);
  api.compareEvals(a, b).then((result) => {
    const side = (s, key) => (s ? (key === "passRate" ? pct(s[key]) : score(s[key])) : "–");
    const delta = (d) => (d === null ? "–" : `${d > 0 ? "+" : ""}${d.toFixed(2)}`);
    body.replaceChildren(
      el("div", { class: "cards" }, ...[["A", result.a], ["B", result.b]].map(([name, r]) =>
        el("div", { class: "stat" }, el("span", {}, `${name}: ${r.suite}`),
          runLink(r.runId), el("strong", {}, `pass rate ${pct(r.passRate)} · score ${score(r.aggregateScore)}`)))),
      el("table", { class: "runs" },
        el("thead", {}, el("tr", {}, ...["test case", "score A", "score B", "change", "pass rate A", "pass rate B"].map((h) => el("th", {}, h)))),
        el("tbody", {}, result.testCases.map((row) => el("tr", {
          dataset: { case: row.testCaseId, delta: row.scoreDelta ?? "" },
          class: row.scoreDelta > 0 ? "better" : row.scoreDelta < 0 ? "worse" : "",
        }, el("td", {}, row.testCaseId), el("td", {}, side(row.a, "score")), el("td", {}, side(row.b, "score")),
        el("td", { class: "delta" }, delta(row.scoreDelta)), el("td", {}, side(row.a, "passRate")),
        el("td", {}, side(row.b, "passRate")))))));
  }, (error) => body.replaceChildren(el("div", { class: "error" }, `${error.code}: ${error.message}`)));
}

export function render(main, ctx) {
  const [first, a, b] = ctx.arg.split("/");
  if (first === "compare") return comparison(main, a, b);
  if (ctx.arg) return detail(main, ctx.arg);
  return overview(main);
}
