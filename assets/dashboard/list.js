// The service list: search, filters and sort over the live model, drawn as
// a virtualised list (only the rows in view exist in the DOM), with each
// visible row's sparkline and 24 h uptime bars fetched lazily, a few
// requests at a time, and cached.

import { api } from "./api.js";
import { sparkline, uptimeBars } from "./charts.js";
import { services } from "./live.js";
import { ago, el, fill, ms, shownStatus, statusBadge } from "./util.js";

const ROW = 56; // px; one row's height, fixed so the list can be virtual
const OVERSCAN = 6;
const SPARK_POINTS = 30;
const DETAIL_TTL = 30_000;
const MAX_DETAIL_LOADS = 3;
const STATUS_ORDER = { DOWN: 0, DEGRADED: 1, PENDING: 2, PAUSED: 3, UP: 4 };

/** The list view; `actions` has pause(svc), edit(svc), remove(svc). */
export class ServiceList {
  constructor(root, actions) {
    this.actions = actions;
    this.view = []; // ids in display order
    this.details = new Map(); // id -> {at, spark, uptime, loading}
    this.queue = [];
    this.loading = 0;
    this.filter = { q: "", status: "", tag: "", sort: "name" };
    this.tags = null; // so the first recompute fills the tag menu
    this.loaded = false; // set once the first snapshot is complete
    this.counts = el("p", { class: "counts", "aria-live": "polite" });
    this.scroller = el("div", {
      class: "scroller",
      tabindex: "-1",
      "aria-label": "services",
    });
    this.spacer = el("div", { class: "spacer" });
    this.rows = el("ul", { class: "rows", "aria-label": "services" });
    this.empty = el("p", { class: "empty", hidden: true });
    this.scroller.append(this.spacer);
    this.spacer.append(this.rows);
    this.tagSelect = el("select", { id: "f-tag", name: "tag" });
    this.toolbar = this.buildToolbar();
    fill(root, this.toolbar, this.counts, this.empty, this.scroller);
    this.scroller.addEventListener("scroll", () => this.scheduleDraw());
    window.addEventListener("resize", () => this.scheduleDraw());
    this.recompute();
  }

  buildToolbar() {
    const search = el("input", {
      id: "f-q",
      type: "search",
      placeholder: "Name contains…",
      autocomplete: "off",
      oninput: (e) => this.setFilter({ q: e.target.value }),
    });
    const status = el(
      "select",
      { id: "f-status", onchange: (e) => this.setFilter({ status: e.target.value }) },
      el("option", { value: "", text: "any" }),
      ["UP", "DEGRADED", "DOWN", "PENDING", "PAUSED"].map((s) => el("option", { value: s, text: s })),
    );
    this.tagSelect.addEventListener("change", (e) => this.setFilter({ tag: e.target.value }));
    const sort = el(
      "select",
      { id: "f-sort", onchange: (e) => this.setFilter({ sort: e.target.value }) },
      el("option", { value: "name", text: "name" }),
      el("option", { value: "status", text: "status (down first)" }),
      el("option", { value: "latency", text: "latency (slowest first)" }),
      el("option", { value: "checked", text: "last check (newest first)" }),
      el("option", { value: "id", text: "newest registered" }),
    );
    return el(
      "form",
      { class: "toolbar", role: "search", onsubmit: (e) => e.preventDefault() },
      el("label", { for: "f-q" }, "Search"),
      search,
      el("label", { for: "f-status" }, "Status"),
      status,
      el("label", { for: "f-tag" }, "Tag"),
      this.tagSelect,
      el("label", { for: "f-sort" }, "Sort by"),
      sort,
    );
  }

  setFilter(change) {
    Object.assign(this.filter, change);
    this.scroller.scrollTop = 0;
    this.recompute();
  }

  /** Rebuilds the filtered, sorted id list (O(n log n): not per event). */
  recompute() {
    const { q, status, tag, sort } = this.filter;
    const needle = q.trim().toLowerCase();
    const counts = { UP: 0, DEGRADED: 0, DOWN: 0, PENDING: 0, PAUSED: 0 };
    const tags = new Set();
    const out = [];
    for (const s of services.values()) {
      const st = shownStatus(s);
      counts[st] = (counts[st] || 0) + 1;
      for (const t of s.tags || []) tags.add(t);
      if (needle && !s.name.toLowerCase().includes(needle)) continue;
      if (status && st !== status) continue;
      if (tag && !(s.tags || []).includes(tag)) continue;
      out.push(s);
    }
    const byName = (a, b) => a.name.localeCompare(b.name) || a.id - b.id;
    const cmp = {
      name: byName,
      status: (a, b) => STATUS_ORDER[shownStatus(a)] - STATUS_ORDER[shownStatus(b)] || byName(a, b),
      latency: (a, b) => (b.last_latency_ms ?? -1) - (a.last_latency_ms ?? -1) || byName(a, b),
      checked: (a, b) => (Date.parse(b.last_check) || 0) - (Date.parse(a.last_check) || 0) || byName(a, b),
      id: (a, b) => b.id - a.id,
    }[sort];
    out.sort(cmp);
    this.view = out.map((s) => s.id);
    this.updateTags(tags);
    const total = services.size;
    const parts = Object.entries(counts)
      .filter(([, n]) => n > 0)
      .map(([k, n]) => `${n.toLocaleString()} ${k}`);
    this.counts.textContent = !this.loaded
      ? "Waiting for the live feed…"
      : `${total.toLocaleString()} services` +
      (parts.length ? ` · ${parts.join(" · ")}` : "") +
      (this.view.length !== total ? ` · ${this.view.length.toLocaleString()} shown` : "");
    this.empty.hidden = this.view.length > 0 || !this.loaded;
    this.empty.textContent = total === 0 ? "No services yet. Add one to start monitoring." : "No service matches the filters.";
    this.spacer.style.height = `${this.view.length * ROW}px`;
    this.draw();
  }

  updateTags(tags) {
    const same = this.tags && tags.size === this.tags.size && [...tags].every((t) => this.tags.has(t));
    if (same) return;
    this.tags = tags;
    const chosen = this.filter.tag;
    fill(
      this.tagSelect,
      el("option", { value: "", text: "any" }),
      [...tags].sort().map((t) => el("option", { value: t, text: t })),
    );
    this.tagSelect.value = tags.has(chosen) ? chosen : "";
    if (!tags.has(chosen)) this.filter.tag = "";
  }

  scheduleDraw() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = null;
      this.draw();
    });
  }

  /** Draws the rows in view; every other row does not exist. */
  draw() {
    const top = this.scroller.scrollTop;
    const height = this.scroller.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW) - OVERSCAN);
    const last = Math.min(this.view.length, Math.ceil((top + height) / ROW) + OVERSCAN);
    this.visible = this.view.slice(first, last);
    this.rows.style.transform = `translateY(${first * ROW}px)`;
    const focusedId = document.activeElement && document.activeElement.closest && document.activeElement.closest("li[data-id]");
    const keep = focusedId ? focusedId.dataset.id : null;
    const items = this.visible.map((id, i) => this.row(services.get(id), first + i));
    if (keep) {
      // Keep the focused row's node so keyboard focus is not lost by a redraw.
      const idx = this.visible.indexOf(Number(keep));
      if (idx >= 0) items[idx] = this.patchRow(focusedId, services.get(Number(keep)));
    }
    fill(this.rows, items);
    clearTimeout(this.loadTimer);
    this.loadTimer = setTimeout(() => this.loadVisible(), 120);
  }

  /** Redraws one service's row if it is in view. */
  refreshRow(id) {
    const node = this.rows.querySelector(`li[data-id="${Number(id)}"]`);
    const svc = services.get(id);
    if (node && svc) this.patchRow(node, svc);
  }

  row(svc, index) {
    const li = el("li", { class: "row", "data-id": svc.id, "aria-setsize": this.view.length, "aria-posinset": index + 1 });
    return this.patchRow(li, svc);
  }

  patchRow(li, svc) {
    const st = shownStatus(svc);
    const d = this.details.get(svc.id);
    li.className = `row st-${st.toLowerCase()}`;
    // Marks rows whose charts came (for a person inspecting, and the tests).
    if (d && d.uptime) li.dataset.charts = "loaded";
    else delete li.dataset.charts;
    fill(
      li,
      el(
        "div",
        { class: "name" },
        el("a", { href: `#/services/${svc.id}`, text: svc.name }),
        el("span", { class: "url", text: svc.url }),
      ),
      el("div", { class: "status" }, statusBadge(st)),
      el("div", { class: "latency", title: "last latency" }, ms(svc.last_latency_ms)),
      el("div", { class: "checked", text: ago(svc.last_check) }),
      el("div", { class: "spark-cell" }, sparkline(d && d.spark)),
      el("div", { class: "bars-cell" }, uptimeBars(d && d.uptime, 24)),
      el("div", { class: "tags" }, (svc.tags || []).map((t) => el("span", { class: "tag", text: t }))),
      el(
        "div",
        { class: "actions" },
        el("button", {
          type: "button",
          text: svc.paused ? "Resume" : "Pause",
          "aria-label": `${svc.paused ? "Resume" : "Pause"} ${svc.name}`,
          onclick: () => this.actions.pause(svc),
        }),
        el("button", {
          type: "button",
          text: "Edit",
          "aria-label": `Edit ${svc.name}`,
          onclick: () => this.actions.edit(svc),
        }),
      ),
    );
    return li;
  }

  /** Adds a live check to a loaded sparkline. */
  addCheck(ev) {
    const d = this.details.get(ev.service_id);
    if (d && d.spark) {
      d.spark.push({ latency: ev.latency, status: ev.status });
      if (d.spark.length > SPARK_POINTS) d.spark.shift();
    }
  }

  forget(id) {
    this.details.delete(id);
  }

  loadVisible() {
    const now = Date.now();
    this.queue = (this.visible || []).filter((id) => {
      const d = this.details.get(id);
      return !d || (!d.loading && now - d.at > DETAIL_TTL);
    });
    this.pump();
  }

  pump() {
    while (this.loading < MAX_DETAIL_LOADS && this.queue.length) {
      const id = this.queue.shift();
      if (!services.has(id) || !(this.visible || []).includes(id)) continue;
      this.loading++;
      const entry = this.details.get(id) || {};
      entry.loading = true;
      entry.at = Date.now();
      this.details.set(id, entry);
      Promise.all([
        api("GET", `/services/${id}/logs?limit=${SPARK_POINTS}`),
        api("GET", `/services/${id}/uptime?hours=24`),
      ])
        .then(([logs, up]) => {
          entry.spark = (logs.json || []).reverse().map((l) => ({ latency: l.latency_ms, status: l.status }));
          entry.uptime = up.json;
        })
        .catch(() => {})
        .finally(() => {
          entry.loading = false;
          entry.at = Date.now();
          this.loading--;
          this.refreshRow(id);
          this.pump();
        });
    }
  }
}
