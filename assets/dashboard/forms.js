// Dialogs: add/edit a service, and generic forms whose problem+json
// `errors` are shown beside the field they name.

import { ApiError, api } from "./api.js";
import { el, fill } from "./util.js";

/**
 * A labelled field. `spec` is {name, label, type, value, required, hint,
 * options (for a select), rows (for a textarea)}.
 */
export function field(prefix, spec) {
  const id = `${prefix}-${spec.name}`;
  const err = el("p", { class: "field-error", id: `${id}-error`, hidden: true });
  const hint = spec.hint ? el("p", { class: "hint", id: `${id}-hint`, text: spec.hint }) : null;
  let input;
  if (spec.type === "select") {
    input = el("select", { id, name: spec.name }, spec.options.map(([v, t]) => el("option", { value: v, text: t })));
    if (spec.value !== undefined) input.value = spec.value;
  } else if (spec.type === "textarea") {
    input = el("textarea", { id, name: spec.name, rows: spec.rows || 4 });
    input.value = spec.value ?? "";
  } else if (spec.type === "checkbox") {
    input = el("input", { id, name: spec.name, type: "checkbox" });
    input.checked = Boolean(spec.value);
  } else {
    input = el("input", {
      id,
      name: spec.name,
      type: spec.type || "text",
      required: spec.required,
      inputmode: spec.type === "number" ? "numeric" : undefined,
      autocomplete: "off",
    });
    input.value = spec.value ?? "";
  }
  input.setAttribute("aria-describedby", [hint && hint.id, err.id].filter(Boolean).join(" "));
  const label = el("label", { for: id, text: spec.label });
  const wrap = el("div", { class: `field field-${spec.type || "text"}`, "data-field": spec.name });
  if (spec.type === "checkbox") wrap.append(input, label, hint, err);
  else wrap.append(label, input, hint, err);
  return wrap;
}

/** Shows an ApiError in `form`: per field where it names one, else on top. */
export function showErrors(form, error) {
  clearErrors(form);
  const general = form.querySelector(".form-error");
  const unplaced = [];
  const list = error instanceof ApiError ? error.errors : [];
  for (const e of list) {
    const top = String(e.field || "").split(/[.[]/)[0];
    const slot = form.querySelector(`[data-field="${CSS.escape(top)}"] .field-error`);
    if (slot) {
      slot.hidden = false;
      slot.textContent = slot.textContent ? `${slot.textContent}; ${e.message}` : e.message;
      slot.parentElement.querySelector("input,select,textarea").setAttribute("aria-invalid", "true");
    } else {
      unplaced.push(`${e.field}: ${e.message}`);
    }
  }
  const head = error instanceof ApiError ? error.message : String(error && error.message ? error.message : error);
  general.hidden = false;
  fill(general, el("strong", { text: head }), unplaced.map((t) => el("div", { text: t })));
  const firstBad = form.querySelector("[aria-invalid=true]");
  (firstBad || general).focus();
}

/** Clears the errors shown in `form`. */
export function clearErrors(form) {
  for (const slot of form.querySelectorAll(".field-error")) {
    slot.hidden = true;
    slot.textContent = "";
  }
  for (const bad of form.querySelectorAll("[aria-invalid]")) bad.removeAttribute("aria-invalid");
  const general = form.querySelector(".form-error");
  if (general) {
    general.hidden = true;
    general.textContent = "";
  }
}

/**
 * Opens a modal form. `submit(form)` returns a promise; the dialog closes
 * when it resolves and shows the errors when it rejects.
 */
export function openDialog(title, fields, submit, submitLabel = "Save") {
  const dialog = document.getElementById("dialog");
  const form = el(
    "form",
    { method: "dialog", novalidate: true },
    el("h2", { id: "dialog-title", text: title }),
    el("div", { class: "form-error", role: "alert", tabindex: "-1", hidden: true }),
    fields,
    el(
      "div",
      { class: "buttons" },
      el("button", { type: "submit", class: "primary", text: submitLabel }),
      el("button", { type: "button", text: "Cancel", onclick: () => dialog.close() }),
    ),
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      await submit(form);
      dialog.close();
    } catch (err) {
      showErrors(form, err);
    } finally {
      button.disabled = false;
    }
  });
  fill(dialog, form);
  dialog.setAttribute("aria-labelledby", "dialog-title");
  dialog.showModal();
  const first = form.querySelector("input,select,textarea");
  if (first) first.focus();
  return form;
}

function numberOrNull(v) {
  const t = String(v).trim();
  if (t === "") return null;
  const n = Number(t);
  return Number.isFinite(n) ? n : t; // the API names a bad value
}

function splitList(v) {
  return String(v)
    .split(",")
    .map((t) => t.trim())
    .filter(Boolean);
}

/** Add (svc undefined) or edit a service. */
export function serviceDialog(svc) {
  const editing = Boolean(svc);
  const s = svc || {};
  const fields = [
    field("svc", { name: "name", label: "Name", value: s.name, required: true }),
    field("svc", {
      name: "url",
      label: "URL",
      type: "url",
      value: s.url && s.url.includes("***") ? "" : s.url,
      required: true,
      hint:
        "http(s)://, tcp://host:port, tls://host:port, dns://resolver/name or push://" +
        (s.url && s.url.includes("***") ? ". Leave empty to keep the current URL (it holds a password)." : ""),
    }),
    field("svc", { name: "interval", label: "Interval (seconds)", type: "number", value: s.interval ?? 30 }),
    field("svc", {
      name: "timeout",
      label: "Timeout (seconds)",
      type: "number",
      value: editing ? s.timeout : "",
      hint: "Empty: 10 s, or the interval if shorter.",
    }),
    field("svc", {
      name: "tags",
      label: "Tags",
      value: (s.tags || []).join(", "),
      hint: "Comma separated, e.g. prod, api",
    }),
    field("svc", { name: "paused", label: "Paused", type: "checkbox", value: s.paused }),
  ];
  openDialog(editing ? `Edit ${s.name}` : "Add a service", fields, async (form) => {
    const v = (n) => form.elements[n].value;
    const body = {
      name: v("name").trim(),
      interval: numberOrNull(v("interval")),
      tags: splitList(v("tags")),
      paused: form.elements.paused.checked,
    };
    if (v("url").trim() || !editing) body.url = v("url").trim();
    const timeout = numberOrNull(v("timeout"));
    if (timeout !== null) body.timeout = timeout;
    if (editing) await api("PATCH", `/services/${s.id}`, body);
    else await api("POST", "/services", body);
  });
}
