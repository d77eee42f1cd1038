// The live page: one EventSource on notify's /api/stream. A snapshot replaces the open
// windows; each alert event (open/update/close) changes one location's card. Text from
// events only ever goes through textContent, never HTML.
"use strict";

const FEED_MAX = 200; // feed entries kept
const CLOSED_KEEP_MS = 10 * 60 * 1000; // a closed window stays visible this long,
const CLOSED_MAX = 50; // and at most this many of them
const $ = (id) => document.getElementById(id);

// location -> {w, state: "open"|"closed", reason, closedAt, node, left}
const windows = new Map();
let source = null;
let filter = ""; // "a,b", or "" for every location
let epoch = null;
let lastOffset = null; // of the last event applied: drops repeats, resumes the stream
let retryTimer = null;
let retryDelay = 1000;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  node.append(...children.filter((child) => child != null && child !== ""));
  return node;
}

function clock(iso) {
  const date = new Date(iso);
  const today = date.toDateString() === new Date().toDateString();
  return today ? date.toLocaleTimeString() : date.toLocaleString();
}

function countdown(end) {
  const s = Math.ceil((Date.parse(end) - Date.now()) / 1000);
  if (s <= 0) return "ending…"; // the processor's close follows within a second
  const pad = (n) => String(n).padStart(2, "0");
  const h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60;
  return "ends in " + (h ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`);
}

// "1700000000000-3" offsets (Redis stream ids) in log order.
function compareOffsets(a, b) {
  const [am, as] = a.split("-").map(Number), [bm, bs] = b.split("-").map(Number);
  return am - bm || as - bs;
}

// Windows (snapshot) and events share these field names.
function windowOf(x) {
  return { location: x.location, start: x.startTime, end: x.endTime, types: x.types || [],
    count: x.alertCount, severity: x.severity, title: x.title, instructions: x.instructions };
}

function setStatus(state, text) {
  $("status").dataset.state = state;
  $("status").textContent = text || state;
}

// Shows one location's window, moving its card between "open" and "recently closed".
function setWindow(w, state, reason, flash) {
  const old = windows.get(w.location);
  const left = state === "open" ? el("div", { class: "left" }, countdown(w.end)) : null;
  const plural = w.count === 1 ? "" : "s";
  const node = el("article",
    { class: flash ? "card flash" : "card", "data-location": w.location, "data-state": state, "data-end": w.end },
    el("h3", {}, w.location),
    el("div", { class: "types" }, w.types.join(", ")),
    left,
    state === "closed" ? el("div", { class: "reason" }, `closed: ${reason}`) : null,
    el("div", { class: "meta" }, `${clock(w.start)} – ${clock(w.end)} · ${w.count} alert${plural}`),
    w.severity ? el("div", { class: "meta" }, `Severity: ${w.severity}`) : null,
    w.title ? el("div", {}, el("strong", {}, w.title)) : null,
    w.instructions ? el("div", {}, w.instructions) : null);
  const section = $(state === "open" ? "open" : "closed");
  if (old && old.node.parentNode === section) old.node.replaceWith(node);
  else {
    if (old) old.node.remove();
    section.prepend(node);
  }
  const closedAt = state === "closed" ? (old && old.state === "closed" ? old.closedAt : Date.now()) : null;
  windows.set(w.location, { w, state, reason, closedAt, node, left });
  const open = $("open").children.length;
  document.title = open ? `(${open}) Alerts: live` : "Alerts: live";
}

function addFeed(kind, text) {
  const feed = $("feed");
  feed.prepend(el("li", { "data-type": kind },
    el("time", {}, new Date().toLocaleTimeString()), " ",
    el("span", { class: `kind ${kind}` }, kind), " ", text));
  while (feed.children.length > FEED_MAX) feed.lastChild.remove();
}

function onSnapshot(message) {
  const snapshot = JSON.parse(message.data);
  epoch = snapshot.epoch;
  lastOffset = snapshot.offset;
  const active = new Set();
  for (const w of snapshot.active) {
    active.add(w.location);
    setWindow(windowOf(w), "open");
  }
  // The snapshot is the whole open state: a window it lacks closed while we were away.
  for (const entry of [...windows.values()]) {
    if (entry.state === "open" && !active.has(entry.w.location)) {
      setWindow(entry.w, "closed", "ended while disconnected");
    }
  }
  addFeed("snapshot", `${snapshot.active.length} open`);
}

function onAlert(message) {
  const event = JSON.parse(message.data);
  if (event.epoch === epoch && lastOffset && compareOffsets(event.offset, lastOffset) <= 0) return;
  epoch = event.epoch;
  lastOffset = event.offset;
  const w = windowOf(event);
  if (event.eventType === "close") setWindow(w, "closed", event.reason || "expired");
  else setWindow(w, "open", null, true);
  const reason = event.eventType === "close" ? ` (${event.reason || "expired"})` : "";
  addFeed(event.eventType, `${event.location}: ${event.type}${reason}, ` +
    `${event.alertCount} alert${event.alertCount === 1 ? "" : "s"}, until ${clock(event.endTime)}`);
}

function query(resume) {
  const params = new URLSearchParams();
  if (filter) params.set("locations", filter);
  // A new EventSource cannot send Last-Event-ID; notify reads it from the query too.
  if (resume && lastOffset) params.set("lastEventId", lastOffset);
  const text = params.toString();
  return text ? "?" + text : "";
}

// Relative URLs, so the page also works behind a proxy under a path prefix.
function connect(resume) {
  clearTimeout(retryTimer);
  if (source) source.close();
  setStatus(resume ? "reconnecting" : "connecting");
  const stream = new EventSource("api/stream" + query(resume));
  source = stream;
  stream.onopen = () => {
    retryDelay = 1000;
    setStatus("live");
  };
  stream.addEventListener("snapshot", onSnapshot);
  stream.addEventListener("alert", onAlert);
  stream.onerror = () => {
    if (stream !== source) return;
    setStatus("reconnecting");
    // CONNECTING: the browser retries by itself, with Last-Event-ID. CLOSED: an HTTP
    // error ended it for good, so retry ourselves unless the filter is what was refused.
    if (stream.readyState === EventSource.CLOSED) retry(stream);
  };
}

async function retry(stream) {
  try {
    const answer = await fetch("api/active" + query(false));
    if (answer.status === 400) {
      const body = await answer.json().catch(() => ({}));
      if (stream === source) setStatus("error", `error: ${body.error || "bad request"}`);
      return;
    }
    if (answer.status === 401 || answer.status === 403) {
      // This notify wants a token (CLIENT_AUTH=jwt): say so, and keep checking, slowly,
      // so that the page goes live once a sign-in elsewhere has set the cookie.
      const body = await answer.json().catch(() => ({}));
      if (stream !== source) return;
      setStatus("signed-out", answer.status === 401
        ? `sign-in needed: this server shows alerts to signed-in users only (${body.error || "no token"})`
        : `not allowed: ${body.error || "forbidden"}`);
      retryTimer = setTimeout(() => connect(true), 30000);
      return;
    }
  } catch { /* notify unreachable: retry below */ }
  if (stream !== source) return;
  retryTimer = setTimeout(() => connect(true), retryDelay);
  retryDelay = Math.min(retryDelay * 2, 30000);
}

function applyFilter(event) {
  if (event) event.preventDefault();
  filter = $("filter").value.split(",").map((s) => s.trim()).filter(Boolean).join(",");
  $("filter").value = filter.replaceAll(",", ", ");
  const url = new URL(window.location.href);
  if (filter) url.searchParams.set("locations", filter);
  else url.searchParams.delete("locations");
  history.replaceState(null, "", url); // bookmarkable
  // Other locations: start from their snapshot, not from the old position.
  windows.clear();
  for (const id of ["open", "closed", "feed"]) $(id).replaceChildren();
  epoch = lastOffset = null;
  addFeed("filter", filter ? `subscribed to ${filter.replaceAll(",", ", ")}` : "all locations");
  connect(false);
}

function tick() {
  const now = Date.now();
  const closed = [];
  for (const entry of windows.values()) {
    if (entry.state === "open") entry.left.textContent = countdown(entry.w.end);
    else closed.push(entry);
  }
  closed.sort((a, b) => b.closedAt - a.closedAt).forEach((entry, i) => {
    if (i >= CLOSED_MAX || now - entry.closedAt > CLOSED_KEEP_MS) {
      entry.node.remove();
      windows.delete(entry.w.location);
    }
  });
}

// The test alert form, and the same request as a curl line. It posts to this server,
// which takes alerts in standalone mode; in the distributed mode, post to the listener.
const field = (name) => $("post-form").elements.namedItem(name).value.trim();
const testAlert = (timestamp) => ({ location: field("location"), type: field("type"),
  timestamp, durationSeconds: Number(field("seconds")) });

function showCurl() {
  const quote = (s) => "'" + s.replaceAll("'", "'\\''") + "'";
  const body = quote(JSON.stringify(testAlert("@NOW@")))
    .replace('"timestamp":"@NOW@"', `"timestamp":"'"$(date -u +%FT%TZ)"'"`);
  $("curl").textContent = `curl -i ${quote(field("url"))} -H 'content-type: application/json' -d ${body}`;
}

async function postAlert(event) {
  event.preventDefault();
  const out = $("post-result");
  out.textContent = "posting…";
  try {
    const answer = await fetch(field("url"), { method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(testAlert(new Date().toISOString())) });
    const text = await answer.text();
    out.textContent = answer.status === 404 || answer.status === 405
      ? `${answer.status}: this server takes no alerts (distributed mode); post to the ` +
        "listener, e.g. with the curl line below."
      : `${answer.status} ${text}`;
  } catch {
    out.textContent = "The browser could not post (unreachable, or another origin without " +
      "CORS): run the curl command below instead.";
  }
}

function start() {
  const form = $("post-form");
  form.elements.namedItem("url").value = new URL("api/alerts", window.location.href).href;
  form.addEventListener("input", showCurl);
  form.addEventListener("submit", postAlert);
  showCurl();
  $("filter-form").addEventListener("submit", applyFilter);
  $("filter").value = new URLSearchParams(window.location.search).get("locations") || "";
  applyFilter();
  setInterval(tick, 250);
}

start();
