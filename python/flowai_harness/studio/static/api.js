// The Studio HTTP API, as the pages use it. Nothing else talks to the server.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function call(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const error = (data && data.error) || {};
    const detail = data && data.detail ? JSON.stringify(data.detail) : text;
    throw new ApiError(response.status, error.code || `HTTP_${response.status}`, error.message || detail);
  }
  return data;
}

export const api = {
  status: () => call("GET", "/api/status"),
  agents: () => call("GET", "/api/agents"),
  threads: (filters = {}) => {
    const query = new URLSearchParams(Object.entries(filters).filter(([, v]) => v));
    return call("GET", `/api/threads?${query}`);
  },
  thread: (id) => call("GET", `/api/threads/${encodeURIComponent(id)}`),
  chat: (prompt, threadId, agent) => call("POST", "/api/chat", { prompt, threadId, agent }),
  stateAt: (id, seq) => call("GET", `/api/threads/${encodeURIComponent(id)}/state?at=${seq}`),
  fork: (id, at, newThreadId) =>
    call("POST", `/api/threads/${encodeURIComponent(id)}/fork`, { at, newThreadId }),
  cancel: (id) => call("POST", `/api/threads/${encodeURIComponent(id)}/cancel`),
  approvals: (status = "pending") => call("GET", `/api/approvals?status=${status}`),
  decide: (id, decision) => call("POST", `/api/approvals/${encodeURIComponent(id)}/decision`, decision),
  metrics: () => call("GET", "/api/metrics"),
  evals: () => call("GET", "/api/evals"),
  startEval: (suite) => call("POST", "/api/evals/runs", { suite }),
  evalRun: (id) => call("GET", `/api/evals/runs/${encodeURIComponent(id)}`),
  cancelEval: (id) => call("POST", `/api/evals/runs/${encodeURIComponent(id)}/cancel`),
  compareEvals: (a, b) => call("GET", `/api/evals/compare?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`),
  evalChart: async (id) => {
    const response = await fetch(`/api/evals/runs/${encodeURIComponent(id)}/chart.svg`);
    if (!response.ok) throw new ApiError(response.status, `HTTP_${response.status}`, await response.text());
    return response.text();
  },
};

// Follow an eval run's envelopes until its end. EventSource resends the last id it saw
// (Last-Event-ID) when it reconnects, so the server resumes after it.
// handlers: onEnvelope(envelope), onEnd(run).
export function followEval(runId, handlers) {
  const source = new EventSource(`/api/evals/runs/${encodeURIComponent(runId)}/stream`);
  source.addEventListener("eval", (m) => handlers.onEnvelope?.(JSON.parse(m.data)));
  source.addEventListener("end", (m) => {
    source.close();
    handlers.onEnd?.(JSON.parse(m.data));
  });
  return { close: () => source.close() };
}

// Follow a thread's events from after `fromSeq`. The stream is reopened after any error
// from the last seq it delivered, so a dropped connection loses nothing and repeats nothing.
// handlers: onLogged(envelope), onLive(event), onState("live" | "reconnecting", reconnects).
export function followThread(threadId, fromSeq, handlers) {
  let lastSeq = fromSeq;
  let source = null;
  let closed = false;
  let reconnects = 0;
  let timer = null;
  const open = () => {
    const url = `/api/threads/${encodeURIComponent(threadId)}/stream?since_seq=${lastSeq}`;
    source = new EventSource(url);
    source.addEventListener("logged", (message) => {
      const envelope = JSON.parse(message.data);
      if (envelope.seq <= lastSeq) return;
      lastSeq = envelope.seq;
      handlers.onLogged?.(envelope);
    });
    source.addEventListener("live", (message) => handlers.onLive?.(JSON.parse(message.data)));
    source.addEventListener("caught-up", () => handlers.onState?.("live", reconnects));
    source.onerror = () => {
      source.close();
      if (closed) return;
      reconnects += 1;
      handlers.onState?.("reconnecting", reconnects);
      timer = setTimeout(open, 500);
    };
  };
  open();
  return {
    close() {
      closed = true;
      clearTimeout(timer);
      source?.close();
    },
    get lastSeq() {
      return lastSeq;
    },
  };
}

// Everything that changes (threads, approvals), for the shell's badge and the list pages.
export function followChanges(handlers) {
  let source = null;
  let timer = null;
  const open = () => {
    source = new EventSource("/api/stream");
    source.addEventListener("snapshot", (m) => handlers.onSnapshot(JSON.parse(m.data)));
    source.addEventListener("thread", (m) => handlers.onThread(JSON.parse(m.data)));
    source.addEventListener("approval", (m) => handlers.onApproval(JSON.parse(m.data)));
    source.onerror = () => {
      source.close();
      timer = setTimeout(open, 1000);
    };
  };
  open();
  return () => {
    clearTimeout(timer);
    source?.close();
  };
}
