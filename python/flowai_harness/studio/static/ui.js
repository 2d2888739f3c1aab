// Small DOM and formatting helpers shared by the pages. No framework: the pages build their
// DOM with el() and keep their own state.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function json(value) {
  return el("pre", { class: "json" }, JSON.stringify(value, null, 2));
}

export function short(value, width = 90) {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  const flat = (text ?? "").replace(/\s+/g, " ");
  return flat.length <= width ? flat : flat.slice(0, width - 1) + "…";
}

export function time(ms) {
  if (typeof ms !== "number") return "";
  return new Date(ms).toLocaleTimeString();
}

export function duration(ms) {
  if (typeof ms !== "number") return "–";
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

export function usd(value) {
  return typeof value === "number" ? `$${value.toFixed(value < 0.01 ? 5 : 3)}` : "–";
}

export function badge(status) {
  return el("span", { class: `badge status-${status}` }, status);
}

export function countdown(expiresAt) {
  if (typeof expiresAt !== "number") return "no deadline";
  const left = expiresAt - Date.now();
  if (left <= 0) return "expired";
  const s = Math.floor(left / 1000);
  const parts = [Math.floor(s / 3600), Math.floor((s % 3600) / 60), s % 60];
  return "expires in " + (parts[0] ? `${parts[0]}h ` : "") + `${parts[1]}m ${String(parts[2]).padStart(2, "0")}s`;
}

// A horizontal bar chart in SVG: rows of {label, value, note}.
export function barChart(title, rows, format = (v) => String(v)) {
  const width = 560, rowHeight = 24, labelWidth = 170, pad = 8;
  const max = Math.max(1, ...rows.map((r) => r.value || 0));
  const height = rows.length * rowHeight + pad * 2;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", title);
  rows.forEach((row, i) => {
    const y = pad + i * rowHeight;
    const barWidth = ((width - labelWidth - 90) * (row.value || 0)) / max;
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", labelWidth - 8);
    label.setAttribute("y", y + 16);
    label.setAttribute("text-anchor", "end");
    label.setAttribute("class", "chart-label");
    label.textContent = short(row.label, 24);
    const bar = document.createElementNS(ns, "rect");
    bar.setAttribute("x", labelWidth);
    bar.setAttribute("y", y + 4);
    bar.setAttribute("height", rowHeight - 8);
    bar.setAttribute("width", Math.max(barWidth, 1));
    bar.setAttribute("rx", 3);
    bar.setAttribute("class", "chart-bar");
    const value = document.createElementNS(ns, "text");
    value.setAttribute("x", labelWidth + Math.max(barWidth, 1) + 6);
    value.setAttribute("y", y + 16);
    value.setAttribute("class", "chart-value");
    value.textContent = format(row.value);
    svg.append(label, bar, value);
  });
  return el("figure", { class: "chart-box" }, el("figcaption", {}, title),
    rows.length ? svg : el("p", { class: "muted" }, "nothing yet"));
}
