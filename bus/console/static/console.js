// The console's page: plain fetch and server-sent events, no framework, no build step.
"use strict";

const $ = (selector) => document.querySelector(selector);
const KINDS = ["handled", "failed", "retried", "dead_lettered"];
const KIND_NAMES = { handled: "handled", failed: "failed", retried: "retried", dead_lettered: "dead-lettered" };

// h("tag.class", {attr: value}, child...): text children are set as text, never as HTML.
function h(spec, attrs, ...children) {
  const [tag, ...classes] = spec.split(".");
  const el = document.createElement(tag);
  if (classes.length) el.className = classes.join(" ");
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function svg(tag, attrs) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs || {})) el.setAttribute(name, String(value));
  return el;
}

class Unauthorized extends Error {}

async function api(path, options = {}) {
  const init = { credentials: "same-origin", headers: {}, ...options };
  if (options.json !== undefined) {
    init.method = init.method || "POST";
    init.headers = { "content-type": "application/json" };
    init.body = JSON.stringify(options.json);
  }
  const response = await fetch(path, init);
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  if (response.status === 401) throw new Unauthorized(body && body.error);
  if (!response.ok) throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
  return body;
}

function toast(text) {
  const el = $("#toast");
  el.textContent = text;
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 5000);
}

// -- login -------------------------------------------------------------------------------

function showLogin(message) {
  stopStream();
  $("#app").hidden = true;
  $("#tabs").hidden = true;
  $("#logout").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = message || "";
  $("#token").focus();
}

async function logIn(token) {
  await api("/api/login", { json: { token } });
}

$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    await logIn($("#token").value);
    $("#token").value = "";
    start();
  } catch (error) {
    $("#login-error").textContent = error.message || "could not log in";
  }
});

$("#logout").addEventListener("click", async () => {
  await api("/api/logout", { method: "POST" }).catch(() => {});
  showLogin("Logged out.");
});

// -- tabs --------------------------------------------------------------------------------

const TABS = ["system", "dead-letters", "contracts"];

function showTab() {
  const name = TABS.includes(location.hash.slice(1)) ? location.hash.slice(1) : "system";
  for (const tab of TABS) $(`#tab-${tab}`).hidden = tab !== name;
  for (const link of document.querySelectorAll("#tabs a")) {
    link.classList.toggle("active", link.dataset.tab === name);
  }
  if (name === "dead-letters") loadDeadLetters();
  if (name === "contracts") loadContracts();
}

window.addEventListener("hashchange", showTab);

// -- live updates --------------------------------------------------------------------------

let stream = null;

function stopStream() {
  if (stream) stream.close();
  stream = null;
}

function startStream() {
  stopStream();
  stream = new EventSource("/api/events");
  stream.addEventListener("update", (event) => {
    const update = JSON.parse(event.data);
    $("#stream").textContent = "live";
    $("#stream").className = "pill online";
    renderServices(update.services);
    renderFlow(update.flow);
  });
  stream.addEventListener("error", async () => {
    $("#stream").textContent = "reconnecting";
    $("#stream").className = "pill silent";
    try {
      await api("/api/services");
    } catch (error) {
      if (error instanceof Unauthorized) showLogin("Your session ended: log in again.");
    }
  });
}

function ago(seconds) {
  if (seconds < 1) return "just now";
  if (seconds < 120) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s ago`;
  return `${Math.round(seconds / 60)} min ago`;
}

function renderServices(overview) {
  $("#broker").textContent = overview.broker;
  const rows = overview.instances.map((i) =>
    h("tr", { "data-service": i.service, "data-status": i.status },
      h("td", {}, h("b", {}, i.service)),
      h("td.mono", {}, i.instance),
      h("td", {}, h(`span.pill.${i.status}`, {}, i.status)),
      h("td.mono", {}, `${i.host}:${i.pid}`),
      h("td", { title: i.handlers.join("\n") },
        i.handlers.length ? i.handlers.map((line) => h("div.mono", {}, line)) : h("span.muted", {}, "none")),
      h("td.mono", {}, i.started.replace("T", " ").replace("Z", "")),
      h("td", {}, ago(i.seen_ago))));
  $("#services tbody").replaceChildren(...rows);
  $("#services-empty").hidden = rows.length > 0;
  const count = (status) => overview.instances.filter((i) => i.status === status).length;
  $("#services-summary").textContent =
    `${count("live")} live · ${count("silent")} silent · ${count("stopped")} stopped`;
}

function chart(rates, buckets) {
  const width = 300, height = 70, pad = 4;
  const all = KINDS.flatMap((kind) => rates[kind] || []);
  const top = Math.max(1, ...all);
  const box = svg("svg", { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none" });
  const x = (i) => pad + (i * (width - 2 * pad)) / Math.max(1, buckets - 1);
  const y = (v) => height - pad - (v * (height - 2 * pad - 10)) / top;
  for (const kind of KINDS) {
    const values = rates[kind] || [];
    if (!values.length) continue;
    const points = values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    box.append(svg("polyline", { class: kind, points, "data-kind": kind }));
  }
  const label = svg("text", { x: width - pad, y: 10, "text-anchor": "end" });
  label.textContent = `${top < 10 ? top.toFixed(1) : Math.round(top)}/s`;
  box.append(label);
  return box;
}

function renderFlow(flow) {
  $("#flow-window").textContent = `per second, last ${Math.round((flow.step * flow.buckets) / 60)} min`;
  const cards = flow.series.map((s) =>
    h("div.card.chart", { "data-topic": s.topic, "data-group": s.group },
      h("h3", {}, h("span.mono", {}, s.topic), h("span.group", {}, `group ${s.group}`)),
      chart(s.rates, flow.buckets),
      h("div.totals", {}, KINDS.map((kind) =>
        h(`span.${kind}${s.totals[kind] ? ".nonzero" : ""}`, { "data-kind": kind },
          `${KIND_NAMES[kind]} `, h("b", {}, String(s.totals[kind])))))));
  $("#flow").replaceChildren(...cards);
  $("#flow-empty").hidden = cards.length > 0;
}

// -- dead letters ------------------------------------------------------------------------------

let browsing = null; // {topic, group} shown below the table

async function loadDeadLetters() {
  let found;
  try {
    found = await api("/api/dead-letters");
  } catch (error) {
    if (error instanceof Unauthorized) return showLogin(error.message);
    return toast(error.message);
  }
  const rows = found.subscriptions.map((s) => {
    const selected = browsing && browsing.topic === s.topic && browsing.group === s.group;
    return h(`tr${selected ? ".selected" : ""}`, { "data-topic": s.topic, "data-group": s.group, "data-count": s.count },
      h("td.mono", {}, s.topic),
      h("td.mono", {}, s.group),
      h("td", {}, s.count ? h("b", {}, `${s.count}${s.capped ? "+" : ""}`) : h("span.muted", {}, "0")),
      h("td", {}, h("button", { type: "button", onclick: () => browse(s.topic, s.group) }, "Browse")));
  });
  $("#dead-subs tbody").replaceChildren(...rows);
  if (!rows.length) {
    $("#dead-subs tbody").append(h("tr", {}, h("td.muted", { colspan: 4 }, "No subscription heard yet.")));
  }
  if (browsing) await browse(browsing.topic, browsing.group, false);
}

function letterView(topic, group, letter) {
  const parts = [
    h("header", {},
      h(`span.pill.${letter.reason || "failed"}`, {}, letter.reason || "?"),
      h("span.mono", {}, letter.message_id),
      h("span.muted", {}, `attempts ${letter.attempts}`),
      h("span.muted", {}, `failed ${letter.failed_at || "?"}`),
      h("span.muted", {}, `on ${letter.host || "?"}`),
      h("button.danger.replay-one", { type: "button", onclick: () => replayOne(topic, group, letter.message_id) },
        "Replay")),
    h("div.exc", {}, `${letter.exception_type || "?"}: `, h("span", {}, letter.exception_message || "")),
    h("details", { open: true }, h("summary", {}, `Body (${letter.size} bytes${letter.body_json ? ", JSON" : ""})`),
      h("pre.body", {}, letter.body_json || letter.body)),
  ];
  if (letter.stacktrace) {
    parts.push(h("details", {}, h("summary", {}, "Stack trace"), h("pre.stack", {}, letter.stacktrace)));
  }
  const headers = Object.entries(letter.headers).map(([k, v]) => `${k}: ${v}`).join("\n");
  parts.push(h("details", {}, h("summary", {}, "Headers"), h("pre", {}, headers)));
  return h("div.card.letter", { "data-id": letter.message_id }, parts);
}

async function browse(topic, group, scroll = true) {
  browsing = { topic, group };
  for (const row of document.querySelectorAll("#dead-subs tbody tr")) {
    row.classList.toggle("selected", row.dataset.topic === topic && row.dataset.group === group);
  }
  let found;
  try {
    found = await api(`/api/dead-letters/${encodeURIComponent(topic)}?group=${encodeURIComponent(group)}`);
  } catch (error) {
    if (error instanceof Unauthorized) return showLogin(error.message);
    return toast(error.message);
  }
  const n = found.letters.length;
  const head = h("div.letters-head", {},
    h("h3", {}, `${n}${found.more ? "+" : ""} dead letter${n === 1 ? "" : "s"} of group `,
      h("span.mono", {}, group), " on ", h("span.mono", {}, topic)),
    n ? h("button.danger", { type: "button", id: "replay-all", onclick: () => replay(topic, group, n, found.more) },
      `Replay ${found.more ? "all" : n === 1 ? "it" : `all ${n}`}`) : null);
  const list = found.letters.map((letter) => letterView(topic, group, letter));
  $("#letters").replaceChildren(head, ...list);
  if (scroll) head.scrollIntoView({ block: "nearest" });
}

function confirmDialog(text, yes) {
  return new Promise((resolve) => {
    const dialog = $("#confirm");
    $("#confirm-text").textContent = text;
    $("#confirm-yes").textContent = yes;
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
  });
}

async function replay(topic, group, n, more) {
  const what = more ? "all the dead letters" : n === 1 ? "this dead letter" : `these ${n} dead letters`;
  const ok = await confirmDialog(
    `Replay ${what} of group ${group} on ${topic}? They go back to that group, which handles them again.`,
    "Replay");
  if (ok) await postReplay(topic, { group });
}

async function replayOne(topic, group, messageId) {
  const ok = await confirmDialog(
    `Replay dead letter ${messageId} of group ${group} on ${topic}? It goes back to that group, ` +
    "which handles it again; the others stay.", "Replay it");
  if (ok) await postReplay(topic, { group, message_id: messageId });
}

async function postReplay(topic, body) {
  try {
    const done = await api(`/api/dead-letters/${encodeURIComponent(topic)}/replay`, { json: body });
    toast(`Replayed ${done.replayed} dead letter${done.replayed === 1 ? "" : "s"} to group ${body.group}.`);
  } catch (error) {
    if (error instanceof Unauthorized) return showLogin(error.message);
    toast(error.message);
  }
  await loadDeadLetters();
}

$("#dead-refresh").addEventListener("click", loadDeadLetters);

// -- contracts ------------------------------------------------------------------------------

function refName(ref) {
  return ref.split("/").pop();
}

function resolve(doc, ref) {
  return ref.slice(2).split("/").reduce((node, part) => (node ? node[part] : undefined), doc);
}

function typeOf(schema) {
  if (!schema || !Object.keys(schema).length) return "any";
  if (schema.$ref) return h("a", { href: `#contracts`, "data-ref": refName(schema.$ref), onclick: jumpTo }, refName(schema.$ref));
  if (schema.anyOf) return joinTypes(schema.anyOf.map(typeOf), " | ");
  if (schema.oneOf) return joinTypes(schema.oneOf.map(typeOf), " | ");
  if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
  if (schema.type === "array") {
    if (schema.prefixItems) return h("span", {}, "[", joinTypes(schema.prefixItems.map(typeOf), ", "), "]");
    return h("span", {}, "list of ", typeOf(schema.items));
  }
  if (schema.type === "object" && schema.additionalProperties && typeof schema.additionalProperties === "object") {
    return h("span", {}, "map to ", typeOf(schema.additionalProperties));
  }
  const base = Array.isArray(schema.type) ? schema.type.join(" | ") : schema.type || "any";
  return schema.format ? `${base} (${schema.format})` : base;
}

// Docstrings are wrapped by hand: one paragraph per blank-line-separated block.
function prose(text) {
  return text.split(/\n\s*\n/).map((para) => h("p", {}, para.replace(/\s*\n\s*/g, " ")));
}

function joinTypes(parts, sep) {
  const out = h("span", {});
  parts.forEach((part, i) => { if (i) out.append(sep); out.append(part); });
  return out;
}

function jumpTo(event) {
  event.preventDefault();
  const target = document.getElementById(`schema-${event.target.dataset.ref}`);
  if (target) target.scrollIntoView({ behavior: "smooth", block: "start" });
}

function constraints(schema) {
  const out = [];
  const names = { minimum: "≥", maximum: "≤", exclusiveMinimum: ">", exclusiveMaximum: "<",
    minLength: "min length", maxLength: "max length", minItems: "min items", maxItems: "max items",
    pattern: "pattern" };
  for (const [key, label] of Object.entries(names)) {
    if (schema[key] !== undefined) out.push(`${label} ${schema[key]}`);
  }
  if (schema.default !== undefined) out.push(`default ${JSON.stringify(schema.default)}`);
  return out.join(", ");
}

function schemaView(name, schema) {
  const props = schema.properties || {};
  const required = new Set(schema.required || []);
  const rows = Object.entries(props).map(([field, s]) =>
    h("tr", {},
      h("td.mono", {}, field, required.has(field) ? h("span.req", { title: "required" }, " *") : null),
      h("td.mono", {}, typeOf(s)),
      h("td.mono", {}, constraints(s)),
      h("td", {}, s.description || "")));
  const body = rows.length
    ? h("table.grid", {}, h("thead", {}, h("tr", {}, h("th", {}, "Field"), h("th", {}, "Type"), h("th", {}, "Constraints"), h("th", {}, "Description"))),
      h("tbody", {}, rows))
    : h("p.mono", {}, typeOf(schema));
  return h("div.schema", { id: `schema-${name}` },
    h("h3", {}, name), schema.description ? h("p.muted", {}, schema.description) : null, body);
}

function deref(doc, node) {
  let out = node;
  for (let i = 0; out && out.$ref && i < 5; i++) out = resolve(doc, out.$ref);
  return out || {};
}

function messageTypes(doc, refs) {
  return joinTypes((refs || []).map((ref) => {
    const message = deref(doc, ref);
    const payload = message.payload || {};
    return payload.$ref ? typeOf(payload) : h("span", {}, message.name || refName(ref.$ref));
  }), " | ");
}

function operationView(doc, op) {
  const channel = resolve(doc, op.channel.$ref) || {};
  const verb = op.reply ? "answers" : op.action === "receive" ? "receives" : "sends";
  const line = h("li", {},
    h("span.verb", {}, verb), h("span.mono", {}, channel.address || "(reply inbox)"), " ",
    messageTypes(doc, op.messages),
    op.reply ? h("span", {}, " → ", messageTypes(doc, op.reply.messages.slice(0, 1))) : null,
    op["x-bus-group"] ? h("span.muted", {}, `  group ${op["x-bus-group"]}`) : null,
    op["x-bus-retry"] ? h("span.muted", {}, `, ${op["x-bus-retry"].attempts} attempts`) : null);
  if (op.description) line.append(h("div.desc", {}, prose(op.description)));
  return line;
}

async function loadContracts() {
  let doc;
  try {
    doc = await api("/api/asyncapi");
  } catch (error) {
    if (error instanceof Unauthorized) return showLogin(error.message);
    return $("#contracts").replaceChildren(h("p.error", {}, error.message));
  }
  const ops = Object.values(doc.operations || {});
  const services = (doc.info.tags || []).map((tag) => {
    const mine = ops.filter((op) => op.action === "receive" && (op.tags || []).some((t) => t.name === tag.name));
    return h("div.card.contract-service", { "data-service": tag.name },
      h("h3", {}, tag.name),
      tag.description ? h("div.prose", {}, prose(tag.description)) : null,
      mine.length ? h("ul.ops", {}, mine.map((op) => operationView(doc, op))) : h("p.muted", {}, "No handlers."));
  });
  const servers = Object.values(doc.servers || {}).map((s) => h("span.mono", {}, `${s.protocol}: ${s["x-bus-url"] || s.host}`));
  const schemas = (doc.components && doc.components.schemas) || {};
  $("#contracts").replaceChildren(
    h("div.card", {}, h("h3", {}, doc.info.title), h("p.muted", {}, doc.info.description || ""),
      servers.length ? h("p", {}, "Broker: ", servers) : null,
      h("p.muted", {}, `AsyncAPI ${doc.asyncapi} · ${Object.keys(doc.channels || {}).length} channels · ${ops.length} operations`)),
    h("div.section-head", {}, h("h2", {}, "Services")),
    ...services,
    h("div.section-head", {}, h("h2", {}, "Messages")),
    ...Object.entries(schemas).map(([name, schema]) => schemaView(name, schema)));
}

// -- start -----------------------------------------------------------------------------------

async function start() {
  try {
    await api("/api/services");
  } catch (error) {
    if (error instanceof Unauthorized) return showLogin();
    return showLogin(error.message);
  }
  $("#login").hidden = true;
  $("#app").hidden = false;
  $("#tabs").hidden = false;
  $("#logout").hidden = false;
  startStream();
  showTab();
}

(async () => {
  // A link printed by `bus console` carries the token after '#': log in with it, then
  // drop it from the address bar and history.
  const match = location.hash.match(/^#token=(.+)$/);
  if (match) {
    history.replaceState(null, "", location.pathname);
    try { await logIn(decodeURIComponent(match[1])); } catch (error) { return showLogin(error.message); }
  }
  start();
})();
