// Inline SVG charts built with DOM calls (no markup strings).

const NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

/** A small latency line, oldest to newest, with failures marked. */
export function sparkline(points, width = 120, height = 28) {
  const root = svg("svg", {
    class: "spark",
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: "img",
  });
  if (!points || points.length === 0) {
    root.setAttribute("aria-label", "no checks yet");
    return root;
  }
  const max = Math.max(1, ...points.map((p) => p.latency || 0));
  const step = points.length > 1 ? width / (points.length - 1) : 0;
  const xy = points.map((p, i) => [
    points.length > 1 ? i * step : width / 2,
    height - 2 - ((p.latency || 0) / max) * (height - 4),
  ]);
  root.append(
    svg("polyline", {
      points: xy.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" "),
      class: "spark-line",
      fill: "none",
    }),
  );
  points.forEach((p, i) => {
    if (p.status === "DOWN") {
      root.append(svg("circle", { cx: xy[i][0], cy: xy[i][1], r: 2, class: "spark-down" }));
    }
  });
  const last = points[points.length - 1];
  root.setAttribute(
    "aria-label",
    `latency of the last ${points.length} checks, up to ${Math.round(max)} ms, last ${Math.round(last.latency || 0)} ms`,
  );
  return root;
}

function barClass(u) {
  if (!u || !u.checks) return "bar-none";
  if (u.failures === 0) return u.degraded ? "bar-degraded" : "bar-up";
  return u.uptime_ratio >= 0.9 ? "bar-partial" : "bar-down";
}

/**
 * One bar per hour of an uptime report (`GET /services/{id}/uptime`),
 * oldest left; hours without checks are grey.
 */
export function uptimeBars(report, hours = 24, width = 120, height = 20) {
  const root = svg("svg", {
    class: "bars",
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: "img",
    preserveAspectRatio: "none",
  });
  const byHour = new Map();
  const from = report ? Date.parse(report.from) : Date.now() - (hours - 1) * 3600e3;
  for (const h of (report && report.hourly) || []) {
    byHour.set(Math.round((Date.parse(h.hour_start) - from) / 3600e3), h);
  }
  const w = width / hours;
  for (let i = 0; i < hours; i++) {
    const h = byHour.get(i);
    const rect = svg("rect", {
      x: (i * w + 0.5).toFixed(2),
      y: 0,
      width: Math.max(1, w - 1).toFixed(2),
      height,
      rx: 1,
      class: barClass(h),
    });
    const title = svg("title");
    title.textContent = h
      ? `${new Date(Date.parse(h.hour_start)).toLocaleString()}: ${(h.uptime_ratio * 100).toFixed(2)} % up, ${h.checks} checks`
      : "no checks";
    rect.append(title);
    root.append(rect);
  }
  const total = report && report.totals ? report.totals.uptime_ratio : null;
  root.setAttribute(
    "aria-label",
    total === null || total === undefined
      ? `uptime over ${hours} hours: no checks`
      : `uptime over ${hours} hours: ${(total * 100).toFixed(2)} %`,
  );
  return root;
}

/** A latency chart of health logs (any order), with axis labels. */
export function latencyChart(logs, width = 720, height = 180) {
  const pts = [...logs]
    .map((l) => ({ t: Date.parse(l.checked_at), v: l.latency_ms || 0, down: l.status === "DOWN" }))
    .filter((p) => !Number.isNaN(p.t))
    .sort((a, b) => a.t - b.t);
  const root = svg("svg", {
    class: "chart",
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    preserveAspectRatio: "none",
  });
  const pad = { l: 48, r: 8, t: 8, b: 20 };
  if (pts.length === 0) {
    root.setAttribute("aria-label", "latency chart: no checks yet");
    const t = svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "axis" });
    t.textContent = "no checks yet";
    root.append(t);
    return root;
  }
  const max = Math.max(1, ...pts.map((p) => p.v));
  const t0 = pts[0].t;
  const span = Math.max(1, pts[pts.length - 1].t - t0);
  const X = (t) => pad.l + ((t - t0) / span) * (width - pad.l - pad.r);
  const Y = (v) => height - pad.b - (v / max) * (height - pad.t - pad.b);
  for (const v of [0, max / 2, max]) {
    root.append(svg("line", { x1: pad.l, x2: width - pad.r, y1: Y(v), y2: Y(v), class: "grid" }));
    const label = svg("text", { x: pad.l - 4, y: Y(v) + 4, "text-anchor": "end", class: "axis" });
    label.textContent = `${v < 10 ? Number(v.toFixed(1)) : Math.round(v)} ms`;
    root.append(label);
  }
  root.append(
    svg("polyline", {
      points: pts.map((p) => `${X(p.t).toFixed(1)},${Y(p.v).toFixed(1)}`).join(" "),
      class: "chart-line",
      fill: "none",
    }),
  );
  for (const p of pts) {
    if (p.down) root.append(svg("circle", { cx: X(p.t), cy: Y(p.v), r: 3, class: "spark-down" }));
  }
  const first = svg("text", { x: pad.l, y: height - 4, class: "axis" });
  first.textContent = new Date(t0).toLocaleTimeString();
  const lastLabel = svg("text", { x: width - pad.r, y: height - 4, "text-anchor": "end", class: "axis" });
  lastLabel.textContent = new Date(pts[pts.length - 1].t).toLocaleTimeString();
  root.append(first, lastLabel);
  root.setAttribute(
    "aria-label",
    `latency of ${pts.length} checks, from ${Math.round(Math.min(...pts.map((p) => p.v)))} to ${Math.round(max)} ms`,
  );
  return root;
}
