// The dashboard's entry: the API key, the router (#/, #/services/{id},
// #/channels, #/maintenance), the live model and the actions on services.

import { channelsPage, maintenancePage } from "./admin.js";
import { api, apiKey, onUnauthorized, setApiKey } from "./api.js";
import { field, openDialog, serviceDialog } from "./forms.js";
import { ServiceList } from "./list.js";
import { connect, services, subscribe } from "./live.js";
import { ServicePage } from "./service.js";
import { throttle } from "./util.js";

const listView = document.getElementById("list-view");
const pageView = document.getElementById("page-view");
const conn = document.getElementById("conn");

const actions = {
  async pause(svc) {
    try {
      await api("PATCH", `/services/${svc.id}`, { paused: !svc.paused });
    } catch (e) {
      if (e.status !== 401) window.alert(e.message);
    }
  },
  edit(svc) {
    serviceDialog(svc);
  },
  async remove(svc) {
    if (!window.confirm(`Delete ${svc.name} and all its logs?`)) return;
    try {
      await api("DELETE", `/services/${svc.id}`);
      location.hash = "#/";
    } catch (e) {
      if (e.status !== 401) window.alert(e.message);
    }
  },
};

const list = new ServiceList(listView, actions);
let page = null;

function route() {
  const hash = location.hash || "#/";
  const m = hash.match(/^#\/services\/(\d+)$/);
  if (page) page.close();
  page = null;
  for (const a of document.querySelectorAll("[data-nav]")) a.removeAttribute("aria-current");
  const nav = m ? "services" : hash.slice(2) || "services";
  const current = document.querySelector(`[data-nav="${nav}"]`);
  if (current) current.setAttribute("aria-current", "page");
  if (hash === "#/" || hash === "#") {
    document.title = "healthmon";
    pageView.hidden = true;
    listView.hidden = false;
    list.draw();
    return;
  }
  listView.hidden = true;
  pageView.hidden = false;
  pageView.replaceChildren();
  if (m) page = new ServicePage(pageView, Number(m[1]), actions);
  else if (hash === "#/channels") channelsPage(pageView);
  else if (hash === "#/maintenance") maintenancePage(pageView);
  else location.hash = "#/";
  document.getElementById("main").focus({ preventScroll: true });
}

// Live updates. A status, a registration or a deletion changes counts and
// perhaps order: the list is rebuilt at most 4 times a second. A check
// redraws only its row, and reorders only when the sort is by latency or
// last check (at most every 2 s: with 100,000 services that is 5,000
// checks a second).
const recompute = throttle(() => list.recompute(), 250);
const recomputeSlow = throttle(() => list.recompute(), 2000);
const dirtyRows = new Set();
let rowFrame = null;
function redrawRow(id) {
  dirtyRows.add(id);
  if (rowFrame) return;
  rowFrame = requestAnimationFrame(() => {
    rowFrame = null;
    for (const d of dirtyRows) list.refreshRow(d);
    dirtyRows.clear();
  });
}

subscribe((change) => {
  switch (change.kind) {
    case "connection":
      conn.textContent = { live: "live", connecting: "connecting…", offline: "reconnecting…" }[change.state];
      conn.className = `conn conn-${change.state}`;
      return;
    case "closed":
      // A socket that never opened may be a refused key: REST says which.
      if (!change.everLive) api("GET", "/services?limit=1").catch(() => {});
      return;
    case "snapshot":
      list.loaded = true;
      list.recompute();
      break;
    case "check":
      list.addCheck(change.event);
      redrawRow(change.id);
      if (list.filter.sort === "latency" || list.filter.sort === "checked") recomputeSlow();
      break;
    case "status":
      redrawRow(change.id);
      recompute();
      break;
    case "delete":
      list.forget(change.id);
      recompute();
      break;
    default:
      redrawRow(change.id);
      recompute();
  }
  if (page) page.update(change);
});

// Relative times ("4 s ago") age: redraw the rows in view now and then.
setInterval(() => {
  if (!listView.hidden) list.draw();
}, 5000);

let asking = false;
function askForKey(message) {
  if (asking) return;
  asking = true;
  const form = openDialog(
    "API key",
    [
      field("key", {
        name: "key",
        label: "API key",
        type: "password",
        value: apiKey(),
        hint: "Create one with: healthmon keys create --name NAME --scope read|write. It is kept for this tab only.",
      }),
    ],
    async (f) => {
      const key = f.elements.key.value.trim();
      const before = apiKey();
      setApiKey(key);
      try {
        await api("GET", "/services?limit=1");
      } catch (e) {
        setApiKey(before);
        throw e;
      }
      asking = false;
      connect();
    },
    "Use this key",
  );
  const dialog = document.getElementById("dialog");
  dialog.addEventListener("close", () => (asking = false), { once: true });
  if (message) {
    const general = form.querySelector(".form-error");
    general.hidden = false;
    general.textContent = message;
  }
}

onUnauthorized((err) => askForKey(apiKey() ? `The key was refused: ${err.message}` : "This server needs an API key."));

document.getElementById("add-service").addEventListener("click", () => serviceDialog());
document.getElementById("key-button").addEventListener("click", () => askForKey(""));
window.addEventListener("hashchange", route);

route();
// Check the key first, so a refused one is asked for instead of a socket
// that silently fails to open.
api("GET", "/services?limit=1").then(
  () => connect(),
  (e) => {
    if (e.status !== 401) connect();
  },
);
// Keep `services` reachable for a person debugging in the console.
window.healthmon = { services };
