// Alert channels (/channels) and maintenance windows (/maintenance): lists
// with add and delete. Secret settings come back as *** from the API.

import { api, nextLink } from "./api.js";
import { field, openDialog } from "./forms.js";
import { el, fill, when } from "./util.js";

const KINDS = ["webhook", "slack", "discord", "teams", "email", "ntfy", "telegram", "pagerduty"];

async function allPages(path) {
  // These lists are small (a few hundred at most), so pages are followed.
  const out = [];
  let next = path;
  for (let i = 0; next && i < 50; i++) {
    const res = await api("GET", next);
    out.push(...(res.json || []));
    next = nextLink(res.headers);
  }
  return out;
}

function table(caption, head, rows) {
  return el(
    "table",
    { class: "admin-table" },
    el("caption", { class: "sr-only", text: caption }),
    el("thead", {}, el("tr", {}, head.map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, rows),
  );
}

function deleteButton(what, path, after) {
  return el("button", {
    type: "button",
    class: "danger",
    text: "Delete",
    "aria-label": `Delete ${what}`,
    onclick: async () => {
      if (!window.confirm(`Delete ${what}?`)) return;
      try {
        await api("DELETE", path);
      } catch (e) {
        window.alert(e.message);
      }
      after();
    },
  });
}

/** The channels page. */
export async function channelsPage(root) {
  const render = async () => {
    let list;
    try {
      list = await allPages("/channels?limit=500");
    } catch (e) {
      fill(root, el("h1", { text: "Alert channels" }), el("p", { class: "form-error", text: e.message }));
      return;
    }
    fill(
      root,
      el("h1", { text: "Alert channels" }),
      el("div", { class: "buttons" }, el("button", { type: "button", class: "primary", text: "Add channel", onclick: add })),
      list.length
        ? table(
            "Alert channels",
            ["Name", "Kind", "All services", "Reminder", ""],
            list.map((c) =>
              el(
                "tr",
                {},
                el("td", { text: c.name }),
                el("td", { text: c.kind }),
                el("td", { text: c.all_services ? "yes" : "no" }),
                el("td", { text: c.remind_every_s ? `every ${c.remind_every_s} s` : "never" }),
                el("td", {}, deleteButton(`channel ${c.name}`, `/channels/${c.id}`, render)),
              ),
            ),
          )
        : el("p", { text: "No channels yet." }),
    );
  };
  const add = () =>
    openDialog(
      "Add an alert channel",
      [
        field("ch", { name: "name", label: "Name", required: true }),
        field("ch", { name: "kind", label: "Kind", type: "select", options: KINDS.map((k) => [k, k]) }),
        field("ch", {
          name: "config",
          label: "Settings (JSON)",
          type: "textarea",
          value: '{"url": "https://example.com/hook"}',
          hint: "For example {\"url\": ...} for a webhook; see docs/alerting.",
        }),
        field("ch", { name: "all_services", label: "Alert for every service", type: "checkbox" }),
        field("ch", { name: "remind_every_s", label: "Remind every (seconds, 0 = never)", type: "number", value: 0 }),
      ],
      async (form) => {
        let config;
        try {
          config = JSON.parse(form.elements.config.value);
        } catch {
          const err = new Error("Settings must be JSON");
          throw err;
        }
        await api("POST", "/channels", {
          name: form.elements.name.value.trim(),
          kind: form.elements.kind.value,
          config,
          all_services: form.elements.all_services.checked,
          remind_every_s: Number(form.elements.remind_every_s.value || 0),
        });
        render();
      },
    );
  await render();
}

function isoFromLocal(v) {
  if (!v) return null;
  const t = new Date(v);
  return Number.isNaN(t.getTime()) ? v : t.toISOString();
}

/** The maintenance windows page. */
export async function maintenancePage(root) {
  const render = async () => {
    let list;
    try {
      list = await allPages("/maintenance");
    } catch (e) {
      fill(root, el("h1", { text: "Maintenance windows" }), el("p", { class: "form-error", text: e.message }));
      return;
    }
    fill(
      root,
      el("h1", { text: "Maintenance windows" }),
      el("div", { class: "buttons" }, el("button", { type: "button", class: "primary", text: "Add window", onclick: add })),
      list.length
        ? table(
            "Maintenance windows",
            ["Name", "Services", "When", "Open now", "Next start", ""],
            list.map((w) =>
              el(
                "tr",
                {},
                el("td", { text: w.name }),
                el("td", { text: Array.isArray(w.services) ? w.services.join(", ") : String(w.services ?? w.tag ?? "") }),
                el("td", {
                  text: w.cron ? `${w.cron} for ${w.duration_s} s (${w.timezone || "UTC"})` : `${when(w.start)} – ${when(w.end)}`,
                }),
                el("td", { text: w.active ? "yes" : "no" }),
                el("td", { text: when(w.next_start) }),
                el("td", {}, deleteButton(`window ${w.name}`, `/maintenance/${w.id}`, render)),
              ),
            ),
          )
        : el("p", { text: "No maintenance windows." }),
    );
  };
  const add = () =>
    openDialog(
      "Add a maintenance window",
      [
        field("mw", { name: "name", label: "Name", required: true }),
        field("mw", { name: "services", label: "Services", value: "all", hint: "\"all\" or service ids, comma separated" }),
        field("mw", { name: "start", label: "Start (one-off)", type: "datetime-local" }),
        field("mw", { name: "end", label: "End (one-off)", type: "datetime-local" }),
        field("mw", { name: "cron", label: "Or recurring: cron", hint: "e.g. 0 2 * * SUN" }),
        field("mw", { name: "duration_s", label: "Duration (seconds)", type: "number" }),
        field("mw", { name: "timezone", label: "Time zone", hint: "e.g. Europe/Berlin" }),
      ],
      async (form) => {
        const v = (n) => form.elements[n].value.trim();
        const services =
          v("services") === "all"
            ? "all"
            : v("services")
                .split(",")
                .map((t) => t.trim())
                .filter(Boolean)
                .map((t) => (/^\d+$/.test(t) ? Number(t) : t));
        const body = { name: v("name"), services };
        if (v("cron")) {
          body.cron = v("cron");
          body.duration_s = v("duration_s") === "" ? null : Number(v("duration_s"));
          if (v("timezone")) body.timezone = v("timezone");
        } else {
          body.start = isoFromLocal(v("start"));
          body.end = isoFromLocal(v("end"));
        }
        await api("POST", "/maintenance", body);
        render();
      },
    );
  await render();
}
