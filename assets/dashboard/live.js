// The live model: every service by id, filled by /ws snapshot pages and
// kept current by its events. Nothing here asks REST for the list, so
// 100,000 services arrive in pages of 1,000 over one socket.

import { apiKey } from "./api.js";

/** Services by id (the last complete snapshot plus events since). */
export const services = new Map();

const subscribers = new Set();

/**
 * Calls `fn(change)` on every change: {kind: "snapshot"} after a complete
 * snapshot, {kind: "check"|"status"|"upsert"|"delete", id, event} per event,
 * {kind: "connection", state} when the socket opens or drops.
 */
export function subscribe(fn) {
  subscribers.add(fn);
  return () => subscribers.delete(fn);
}

function emit(change) {
  for (const fn of subscribers) {
    try {
      fn(change);
    } catch (e) {
      console.warn("dashboard subscriber failed", e);
    }
  }
}

/** "connecting", "live" or "offline". */
export let connection = "connecting";
let socket = null;
let pending = null; // the snapshot being received, page by page
let attempt = 0;
let retryTimer = null;
let everLive = false;

function setConnection(state) {
  connection = state;
  emit({ kind: "connection", state });
}

function apply(msg) {
  switch (msg.type) {
    case "snapshot": {
      if (!pending) pending = new Map();
      for (const s of msg.services || []) pending.set(s.id, s);
      if (msg.last) {
        services.clear();
        for (const [id, s] of pending) services.set(id, s);
        pending = null;
        emit({ kind: "snapshot" });
      }
      break;
    }
    case "resync":
      // A fresh snapshot follows; start it from scratch.
      pending = new Map();
      break;
    case "check": {
      const s = services.get(msg.service_id);
      if (s) {
        s.last_status = msg.status;
        s.last_latency_ms = msg.latency;
        s.last_check = msg.checked_at;
      }
      emit({ kind: "check", id: msg.service_id, event: msg });
      break;
    }
    case "status_change": {
      const s = services.get(msg.service_id);
      if (s) s.last_status = msg.new_status;
      emit({ kind: "status", id: msg.service_id, event: msg });
      break;
    }
    case "service_created":
    case "service_updated":
      if (msg.service) {
        services.set(msg.service.id, msg.service);
        emit({ kind: "upsert", id: msg.service.id, event: msg });
      }
      break;
    case "service_deleted":
      services.delete(msg.service_id);
      emit({ kind: "delete", id: msg.service_id, event: msg });
      break;
    default:
      break;
  }
}

/** Opens the socket (again); the old one, if any, is closed first. */
export function connect() {
  clearTimeout(retryTimer);
  if (socket) {
    socket.onclose = null;
    socket.close();
  }
  pending = null;
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const key = apiKey();
  const query = key ? `?access_token=${encodeURIComponent(key)}` : "";
  setConnection("connecting");
  const ws = new WebSocket(`${proto}//${location.host}/ws${query}`);
  socket = ws;
  ws.onopen = () => {
    attempt = 0;
    everLive = true;
    setConnection("live");
  };
  ws.onmessage = (ev) => {
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch {
      return;
    }
    apply(msg);
  };
  ws.onclose = () => {
    if (socket !== ws) return;
    socket = null;
    setConnection("offline");
    // Exponential backoff with jitter, 0.5 s to 15 s, so a restarted
    // server is not met by every dashboard at the same instant.
    const delay = Math.min(15000, 500 * 2 ** attempt) * (0.75 + Math.random() * 0.5);
    attempt = Math.min(attempt + 1, 8);
    retryTimer = setTimeout(connect, delay);
    emit({ kind: "closed", everLive });
  };
}
