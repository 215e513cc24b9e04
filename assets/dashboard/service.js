// A service's page (#/services/{id}): status, uptime over 24 h / 7 d / 30 d,
// a latency chart, status changes and its logs, paged.

import { api, nextLink } from "./api.js";
import { latencyChart, uptimeBars } from "./charts.js";
import { services } from "./live.js";
import { ago, el, fill, ms, pct, shownStatus, statusBadge, when } from "./util.js";

const PAGE = 50;

/** The page of one service; `actions` as for the list. */
export class ServicePage {
  constructor(root, id, actions) {
    this.root = root;
    this.id = id;
    this.actions = actions;
    this.logs = []; // the page shown, newest first
    this.cursors = []; // `before` of each earlier page, for "Newer"
    this.next = null;
    this.changes = [];
    this.header = el("section", { class: "svc-head" });
    this.uptime = el("section", { class: "uptime", "aria-labelledby": "h-uptime" });
    this.chart = el("section", { class: "latency-box", "aria-labelledby": "h-latency" });
    this.changesBox = el("section", { class: "changes", "aria-labelledby": "h-changes" });
    this.logsBox = el("section", { class: "logs", "aria-labelledby": "h-logs" });
    fill(
      root,
      el("p", {}, el("a", { href: "#/", text: "← All services" })),
      this.header,
      this.uptime,
      this.chart,
      this.changesBox,
      this.logsBox,
    );
    this.drawHeader();
    this.loadUptime();
    this.loadLogs(null);
    // Rollups are written every few seconds: refresh the uptime now and then.
    this.timer = setInterval(() => {
      if (this.closed) clearInterval(this.timer);
      else this.loadUptime();
    }, 15_000);
  }

  /** Stops the page's refresh (it was navigated away from). */
  close() {
    clearInterval(this.timer);
    this.closed = true;
  }

  drawHeader() {
    const svc = services.get(this.id);
    if (!svc) {
      fill(this.header, el("h1", { text: `Service ${this.id}` }), el("p", { text: "Loading, or no such service." }));
      return;
    }
    const st = shownStatus(svc);
    document.title = `${svc.name} · healthmon`;
    fill(
      this.header,
      el("h1", {}, el("span", { class: "svc-name", text: svc.name }), " ", statusBadge(st)),
      el(
        "dl",
        { class: "facts" },
        el("dt", { text: "URL" }),
        el("dd", { class: "url", text: svc.url }),
        el("dt", { text: "Last check" }),
        el("dd", { text: `${ago(svc.last_check)} · ${ms(svc.last_latency_ms)}` }),
        el("dt", { text: "Interval" }),
        el("dd", { text: `${svc.interval} s (timeout ${svc.timeout} s)` }),
        el("dt", { text: "Tags" }),
        el("dd", { text: (svc.tags || []).join(", ") || "none" }),
      ),
      el(
        "div",
        { class: "buttons" },
        el("button", { type: "button", text: "Edit", onclick: () => this.actions.edit(svc) }),
        el("button", {
          type: "button",
          text: svc.paused ? "Resume" : "Pause",
          onclick: () => this.actions.pause(svc),
        }),
        el("button", { type: "button", class: "danger", text: "Delete", onclick: () => this.actions.remove(svc) }),
      ),
    );
  }

  async loadUptime() {
    const spans = [
      [24, "24 hours"],
      [24 * 7, "7 days"],
      [24 * 30, "30 days"],
    ];
    const reports = await Promise.all(
      spans.map(([h]) => api("GET", `/services/${this.id}/uptime?hours=${h}`).then((r) => r.json, () => null)),
    );
    fill(
      this.uptime,
      el("h2", { id: "h-uptime", text: "Uptime" }),
      el("p", { class: "hint", text: "From hourly rollups, written every few seconds: the newest checks may not be in yet." }),
      el(
        "div",
        { class: "uptime-grid" },
        spans.map(([, label], i) =>
          el(
            "div",
            { class: "uptime-cell" },
            el("div", { class: "uptime-label", text: label }),
            el("div", { class: "uptime-value", text: pct(reports[i] && reports[i].totals.uptime_ratio) }),
            el("div", {
              class: "uptime-sub",
              text: reports[i] ? `${reports[i].totals.checks} checks, mean ${ms(reports[i].totals.mean_latency_ms)}` : "",
            }),
          ),
        ),
      ),
      el("div", { class: "bars-wide" }, uptimeBars(reports[0], 24, 720, 28)),
    );
  }

  async loadLogs(before) {
    const q = `limit=${PAGE}${before ? `&before=${encodeURIComponent(before)}` : ""}`;
    let res;
    try {
      res = await api("GET", `/services/${this.id}/logs?${q}`);
    } catch (e) {
      fill(this.logsBox, el("h2", { id: "h-logs", text: "Checks" }), el("p", { class: "form-error", text: e.message }));
      return;
    }
    this.before = before;
    this.logs = res.json || [];
    const link = nextLink(res.headers);
    const m = link && link.match(/[?&]before=([^&]+)/);
    this.next = m ? decodeURIComponent(m[1]) : null;
    this.drawLogs();
  }

  drawLogs() {
    fill(this.chart, el("h2", { id: "h-latency", text: "Latency" }), latencyChart(this.logs));
    // Status changes: from the checks on this page, plus live ones.
    const found = [];
    for (let i = this.logs.length - 1; i > 0; i--) {
      const older = this.logs[i];
      const newer = this.logs[i - 1];
      if (older.status !== newer.status) {
        found.push({ at: newer.checked_at, from: older.status, to: newer.status });
      }
    }
    const all = [...this.changes, ...found.reverse()];
    const seen = new Set();
    const list = all.filter((c) => {
      const k = `${c.at}|${c.to}`;
      if (seen.has(k)) return false;
      seen.add(k);
      return true;
    });
    fill(
      this.changesBox,
      el("h2", { id: "h-changes", text: "Status changes" }),
      list.length
        ? el(
            "ol",
            { class: "change-list" },
            list.map((c) => el("li", {}, el("time", { text: when(c.at) }), " ", statusBadge(c.from), " → ", statusBadge(c.to))),
          )
        : el("p", { text: "None among the checks shown." }),
    );
    const table = el(
      "table",
      { class: "log-table" },
      el("caption", { class: "sr-only", text: "Health checks, newest first" }),
      el(
        "thead",
        {},
        el(
          "tr",
          {},
          ["Checked", "Status", "Latency", "HTTP", "Error"].map((h) => el("th", { scope: "col", text: h })),
        ),
      ),
      el(
        "tbody",
        {},
        this.logs.map((l) =>
          el(
            "tr",
            {},
            el("td", { text: when(l.checked_at) }),
            el("td", {}, statusBadge(l.status)),
            el("td", { text: ms(l.latency_ms) }),
            el("td", { text: l.status_code ?? "–" }),
            el("td", { class: "error", text: l.error || "" }),
          ),
        ),
      ),
    );
    const newer = el("button", {
      type: "button",
      text: "← Newer",
      disabled: this.cursors.length === 0,
      onclick: () => this.loadLogs(this.cursors.pop() || null),
    });
    const older = el("button", {
      type: "button",
      text: "Older →",
      disabled: !this.next,
      onclick: () => {
        this.cursors.push(this.before);
        this.loadLogs(this.next);
      },
    });
    fill(
      this.logsBox,
      el("h2", { id: "h-logs", text: "Checks" }),
      this.logs.length ? table : el("p", { text: "No checks yet." }),
      el("div", { class: "buttons pager" }, newer, older),
    );
  }

  /** Takes a live change from the model. */
  update(change) {
    if (change.id !== this.id && change.kind !== "snapshot") return;
    if (change.kind === "delete") {
      fill(this.header, el("h1", { text: "Deleted" }), el("p", { text: "This service no longer exists." }));
      return;
    }
    if (change.kind === "status") {
      const e = change.event;
      this.changes.unshift({ at: e.changed_at, from: e.old_status, to: e.new_status });
    }
    this.drawHeader();
    if (change.kind === "check" && this.cursors.length === 0 && !this.before) {
      // On the newest page, the new check goes on top.
      const e = change.event;
      this.logs.unshift({
        checked_at: e.checked_at,
        status: e.status,
        latency_ms: e.latency,
        status_code: e.status_code ?? null,
        error: e.error ?? null,
      });
      if (this.logs.length > PAGE) this.logs.pop();
      this.drawLogs();
    } else if (change.kind === "status") {
      this.drawLogs();
    }
  }
}
