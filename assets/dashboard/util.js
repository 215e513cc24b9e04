// Small DOM helpers. Text always goes in as textContent, never as markup:
// service names, URLs, tags and errors are user input.

/** Creates an element with properties, attributes and children. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") node.textContent = String(v);
    else if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k in node && typeof v !== "string") node[k] = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

/** Removes every child of `node`, then appends `children`. */
export function fill(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
  return node;
}

/** "12 ms", "1.2 s", or an en dash for nothing. */
export function ms(v) {
  if (v === null || v === undefined) return "–";
  return v < 1000 ? `${Math.round(v)} ms` : `${(v / 1000).toFixed(1)} s`;
}

/** "99.95 %" from a ratio, or an en dash. */
export function pct(ratio) {
  if (ratio === null || ratio === undefined) return "–";
  const p = ratio * 100;
  return `${p >= 99.995 || p === 0 ? p.toFixed(0) : p.toFixed(2)} %`;
}

/** A short relative time: "4 s ago", "3 min ago", or the date. */
export function ago(iso) {
  if (!iso) return "never";
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  const s = Math.max(0, Math.round((Date.now() - t) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(t).toLocaleString();
}

/** A local date and time for a table. */
export function when(iso) {
  if (!iso) return "–";
  const t = Date.parse(iso);
  return Number.isNaN(t) ? iso : new Date(t).toLocaleString();
}

/** The status a person reads: PAUSED wins over the last result. */
export function shownStatus(svc) {
  return svc.paused ? "PAUSED" : svc.last_status || "PENDING";
}

/** A status pill: colour for the eye, the word for everyone. */
export function statusBadge(status) {
  return el("span", { class: `badge s-${status.toLowerCase()}`, text: status });
}

/** Calls `fn` at most once per `wait` ms, the last call winning. */
export function throttle(fn, wait) {
  let timer = null;
  return () => {
    if (timer !== null) return;
    timer = setTimeout(() => {
      timer = null;
      fn();
    }, wait);
  };
}
