// Chat: pick an agent, type, watch the run. The conversation is drawn from the thread's run
// log (so an old thread reads the same as a live one) plus the live events of a run in
// progress (a live model's text as it streams). Sub-agent calls nest; tool calls open into
// their arguments and result; approval cards sit where the run stopped.

import { api, followThread } from "./api.js";
import { el, json, short } from "./ui.js";
import { approvalCard } from "./approvals.js";

const LAST_THREAD = "flowai.studio.thread";

function approvalFromEvent(data, threadId) {
  return {
    id: data.id, threadId, kind: data.kind, target: data.target, agent: data.agent,
    payload: data.payload, glimpse: data.glimpse, expiresAt: data.expiresAt ?? null,
    approvalsRequired: data.approvalsRequired || 1, approvers: [], status: "pending",
    requestedAt: null,
  };
}

// Draws one thread's events into `root`.
class Conversation {
  constructor(root, threadId, ctx) {
    this.root = root;
    this.threadId = threadId;
    this.ctx = ctx;
    this.stack = [root];
    this.calls = new Map(); // tool / sub-agent call id -> its element
    this.streams = new Map(); // model request id -> the text block its deltas fill
    this.loggedText = new Set(); // model request ids whose logged text is shown
    this.cards = [];
  }

  get here() {
    return this.stack[this.stack.length - 1];
  }

  textBlock(agent, requestId) {
    const block = el("div", { class: "text", dataset: { agent: agent || "", requestId: requestId || "" } },
      el("div", { class: "who" }, agent || "agent"), el("div", { class: "body" }));
    this.here.append(block);
    return block;
  }

  live(event) {
    if (event.type === "text" || event.type === "reasoning") {
      // Its complete text was logged (and shown) first: the deltas came late.
      if (this.loggedText.has(event.requestId)) return;
      let block = this.streams.get(event.requestId);
      if (!block) {
        block = this.textBlock(event.agent, event.requestId);
        block.dataset.source = "live";
        block.dataset.deltas = "0";
        if (event.type === "reasoning") block.classList.add("reasoning");
        this.streams.set(event.requestId, block);
      }
      const seq = event.deltaSeq;
      if (typeof seq === "number") {
        if (seq <= Number(block.dataset.lastSeq || 0)) return; // a repeated delta
        block.dataset.lastSeq = String(seq);
      }
      block.querySelector(".body").textContent += event.text;
      block.dataset.deltas = String(Number(block.dataset.deltas) + 1);
    } else if (event.type === "error") {
      this.here.append(el("div", { class: "error" }, `${event.error?.code}: ${event.error?.message}`));
    }
  }

  logged(envelope) {
    const p = envelope.payload;
    const at = this.here;
    switch (p.type) {
      case "run-start":
        this.stack = [this.root];
        this.root.append(el("div", { class: "user-message", dataset: { seq: envelope.seq } },
          el("div", { class: "who" }, "you → ", p.agent), el("div", { class: "body" }, p.prompt)));
        break;
      case "text":
      case "reasoning": {
        if (p.requestId && this.streams.has(p.requestId)) break; // shown as it streamed
        if (p.requestId) this.loggedText.add(p.requestId);
        const block = this.textBlock(p.agent, p.requestId);
        block.dataset.source = "log";
        block.querySelector(".body").textContent = p.text;
        if (p.type === "reasoning") block.classList.add("reasoning");
        break;
      }
      case "tool-invocation": {
        if (p.state === "call") {
          const box = el("details", { class: "tool-call", dataset: { tool: p.toolName, state: "call" } },
            el("summary", {}, el("span", { class: "tool-name" }, p.toolName),
              el("span", { class: "muted" }, ` ${short(p.args, 60)}`),
              el("span", { class: "tool-state" }, " running…")),
            el("div", { class: "label" }, "arguments"), json(p.args));
          this.calls.set(p.toolInvocationId, box);
          at.append(box);
        } else {
          const box = this.calls.get(p.toolInvocationId);
          if (!box) break;
          box.dataset.state = p.isError ? "error" : "result";
          box.querySelector(".tool-state").textContent = p.isError ? " failed" : " done";
          box.append(el("div", { class: "label" }, "result"), json(p.result));
        }
        break;
      }
      case "tool-agent": {
        if (!p.targetAgent) break; // the entry agent's own wrapping pair
        if (p.state === "call") {
          const inner = el("div", { class: "nested-body" });
          const box = el("section", { class: "sub-agent", dataset: { agent: p.targetAgent } },
            el("header", {}, `${p.agent} → `, el("strong", {}, p.targetAgent)),
            el("details", { class: "prompt" }, el("summary", {}, "prompt"), el("pre", {}, p.prompt || "")),
            inner);
          at.append(box);
          this.calls.set(p.toolInvocationId, box);
          this.stack.push(inner);
        } else {
          const box = this.calls.get(p.toolInvocationId);
          const index = this.stack.findIndex((node) => box && node.parentElement === box);
          if (index > 0) this.stack.length = index;
          box?.classList.add(p.isError ? "failed" : "done");
        }
        break;
      }
      case "approval-required": {
        const approval = approvalFromEvent(p.data, this.threadId);
        approval.requestedAt = envelope.ts;
        if (!this.ctx.state.approvals.has(approval.id)) this.ctx.state.approvals.set(approval.id, approval);
        const card = approvalCard(approval, this.ctx);
        this.cards.push(card);
        at.append(card);
        break;
      }
      case "approval-progress":
      case "approval-decision": {
        // The log is the truth for this thread's cards, however the global feed is doing.
        const known = this.ctx.state.approvals.get(p.data.id);
        if (!known) break;
        const updated = { ...known };
        if (p.type === "approval-progress") updated.approvers = [...known.approvers, p.data.approver];
        else Object.assign(updated, {
          status: p.data.outcome?.outcome || "closed", approver: p.data.approver ?? null,
          feedback: p.data.feedback ?? null, reason: p.data.reason ?? null, decidedAt: envelope.ts,
        });
        if (known.status === "pending" || p.type === "approval-decision") {
          this.ctx.state.approvals.set(updated.id, updated);
          this.ctx.state.changed("approval", updated);
        }
        break;
      }
      case "plan-status-change":
        at.append(el("div", { class: "note" }, `plan ${p.data.planId}: `,
          `${p.data.fromAlias || p.data.from || "new"} → ${p.data.toAlias || p.data.to}`));
        break;
      case "model-failure":
        at.append(el("div", { class: "note warn" }, `${p.agent}: ${p.kind} (${p.message}); ${p.recovery?.action}`));
        break;
      case "finish":
        this.root.append(el("div", { class: "note end", dataset: { finish: p.finishReason } },
          `run ${p.finishReason === "cancelled" ? "cancelled" : "finished"} · ${p.usage?.totalTokens ?? 0} tokens`));
        break;
      case "error":
        this.root.append(el("div", { class: "error" }, `${p.error?.code}: ${p.error?.message}`));
        break;
      default:
        break;
    }
  }

  dispose() {
    for (const card of this.cards) card.dispose();
  }
}

export function render(main, ctx) {
  const chattable = ctx.state.agents.filter((a) => a.chat);
  const agentSelect = el("select", { name: "agent" },
    chattable.map((a) => el("option", { value: a.name }, `${a.name} (${a.role})`)));
  const threadLabel = el("span", { class: "thread-label muted" });
  const connection = el("span", { class: "connection muted" });
  const log = el("div", { class: "conversation", id: "conversation" });
  const prompt = el("textarea", { name: "prompt", rows: 3, placeholder: "Message the agent… (Ctrl+Enter sends)" });
  const send = el("button", { class: "primary", type: "submit" }, "Send");
  const cancel = el("button", { class: "cancel", type: "button", hidden: true }, "Cancel run");
  const error = el("div", { class: "form-error" });
  const form = el("form", { class: "composer" }, prompt, el("div", { class: "buttons" }, send, cancel), error);
  const newThread = el("button", { type: "button" }, "New thread");

  main.append(
    el("div", { class: "chat-head" }, el("h1", {}, "Chat"), el("label", {}, "Agent ", agentSelect),
      newThread, threadLabel, connection),
    log, form);

  let threadId = ctx.arg || null;
  let conversation = null;
  let follower = null;

  const showRunning = () => {
    const thread = threadId ? ctx.state.threads.get(threadId) : null;
    const busy = thread && (thread.status === "running" || thread.status === "awaiting-approval");
    cancel.hidden = !busy;
    main.dataset.threadStatus = thread ? thread.status : "idle";
  };
  // Resolves once the thread's stream has caught up: a run started after that shows every
  // live event (live events are not replayed).
  const open = (id) => new Promise((caughtUp) => {
    follower?.close();
    conversation?.dispose();
    log.replaceChildren();
    threadId = id;
    conversation = null;
    threadLabel.textContent = id ? `thread ${id}` : "new thread";
    if (id) localStorage.setItem(LAST_THREAD, id);
    if (!id) {
      showRunning();
      return caughtUp();
    }
    conversation = new Conversation(log, id, ctx);
    follower = followThread(id, 0, {
      onLogged: (envelope) => {
        conversation.logged(envelope);
        log.scrollTop = log.scrollHeight;
      },
      onLive: (event) => {
        conversation.live(event);
        log.scrollTop = log.scrollHeight;
      },
      onState: (s, n) => {
        connection.textContent = s === "live" ? "● live" : `reconnecting (${n})…`;
        if (s === "live") caughtUp();
      },
    });
    showRunning();
  });

  const newThreadId = () => {
    const bytes = crypto.getRandomValues(new Uint8Array(6));
    return "studio-" + [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = prompt.value.trim();
    if (!text) return;
    error.textContent = "";
    send.disabled = true;
    try {
      if (!threadId) {
        // Follow the new thread first, so its first live text is not missed.
        const id = newThreadId();
        history.replaceState(null, "", `#/chat/${encodeURIComponent(id)}`);
        await open(id);
      }
      await api.chat(text, threadId, agentSelect.value || null);
      prompt.value = "";
    } catch (failure) {
      error.textContent = `${failure.code}: ${failure.message}`;
    } finally {
      send.disabled = false;
    }
  });
  prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
  });
  cancel.addEventListener("click", async () => {
    try {
      await api.cancel(threadId);
    } catch (failure) {
      error.textContent = `${failure.code}: ${failure.message}`;
    }
  });
  newThread.addEventListener("click", () => {
    history.replaceState(null, "", "#/chat");
    open(null);
  });

  const listener = (kind, value) => {
    if (kind === "snapshot" || (kind === "thread" && value.threadId === threadId)) showRunning();
  };
  ctx.state.listeners.add(listener);
  open(threadId);
  return () => {
    ctx.state.listeners.delete(listener);
    follower?.close();
    conversation?.dispose();
  };
}
