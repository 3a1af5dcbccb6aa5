// The recorder's pages: plain JavaScript, no framework. Every value from a device (ids, labels, sources, reasons)
// goes into the page with textContent or setAttribute on a safe attribute; never innerHTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
  "#9c755f", "#bab0ac"];

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function link(href, text) {
  const a = el("a", text);
  a.setAttribute("href", href);  // always a path we build: "/device/" + encodeURIComponent(id), never data alone
  return a;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

function row(cells, cls) {
  const tr = el("tr", null, cls);
  for (const c of cells) {
    const td = el("td");
    if (c instanceof Node) td.appendChild(c); else td.textContent = c === null || c === undefined ? "—" : String(c);
    tr.appendChild(td);
  }
  return tr;
}

function when(ts) {
  if (ts === null || ts === undefined || !isFinite(ts)) return "—";
  return new Date(ts * 1000).toISOString().replace("T", " ").slice(0, 19);
}

function ago(ts) {
  if (ts === null || ts === undefined) return "";
  const s = Math.max(0, Date.now() / 1000 - ts);
  if (s < 90) return Math.round(s) + " s ago";
  if (s < 5400) return Math.round(s / 60) + " min ago";
  if (s < 172800) return Math.round(s / 3600) + " h ago";
  return Math.round(s / 86400) + " days ago";
}

function num(v, digits) {
  return v === null || v === undefined || !isFinite(v) ? "—" : Number(v).toFixed(digits);
}

function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(n)) + " " + units[i];
}

function tail(prefix) {
  return decodeURIComponent(location.pathname.slice(prefix.length));
}

async function getJSON(url) {
  const response = await fetch(url, {credentials: "same-origin"});
  if (!response.ok) throw new Error(url.split("?")[0] + ": HTTP " + response.status);
  return response.json();
}

function showError(err) {
  const p = document.getElementById("error");
  if (!p) return;
  p.hidden = !err;
  p.textContent = err ? String(err.message || err) : "";
}

// ---- fleet
async function fleet() {
  try {
    const rows = await getJSON("/api/devices");
    const body = document.querySelector("#fleet tbody");
    body.replaceChildren();
    let bad = 0;
    for (const d of rows) {
      const mark = d.degraded ? "degraded" : d.stale ? "stale" : d.online === false ? "offline" : "ok";
      if (mark !== "ok") bad++;
      const status = d.online === null || d.online === undefined ? "unknown" : d.online ? "online" : "offline";
      const delegate = d.delegate ? d.delegate + (d.delegate_reason ? " (" + d.delegate_reason + ")" : "") : null;
      const health = el("span", mark === "ok" ? "ok" : mark.toUpperCase() + (d.problem ? ": " + d.problem : ""),
        "mark mark-" + mark);
      body.appendChild(row([link("/device/" + encodeURIComponent(d.device_id), d.device_id), d.source || "(device)",
        status + (d.since_ts ? " since " + when(d.since_ts) : ""), delegate, num(d.real_time_factor, 3),
        d.events_today, d.queue_depth, bytes(d.clips_bytes),
        d.last_metrics_ts ? when(d.last_metrics_ts) + " (" + ago(d.last_metrics_ts) + ")" : null, health],
      "device-row " + mark));
    }
    document.getElementById("summary").textContent = rows.length + " device/source rows, " + bad +
      " need attention. Updated " + when(Date.now() / 1000) + " UTC.";
    showError(null);
  } catch (err) { showError(err); }
}

// ---- live view of one device
function device() {
  const id = tail("/device/");
  document.getElementById("device").textContent = id;
  document.title = id + " - live - edge-audio recorder";
  const metrics = {};
  const drawMetrics = () => {
    const body = document.querySelector("#metrics tbody");
    body.replaceChildren();
    for (const source of Object.keys(metrics).sort()) {
      const m = metrics[source] || {};
      body.appendChild(row([source || "(device)", num(m.real_time_factor, 3), num(m.inference_p50_ms, 1),
        num(m.level_dbfs, 1), m.events, m.delegate ? m.delegate + (m.delegate_reason ? " (" + m.delegate_reason +
        ")" : "") : null, m.failed || m.problem || ""]));
    }
    const levels = Object.values(metrics).map(m => m && m.level_dbfs).filter(v => v !== null && v !== undefined);
    if (levels.length) document.getElementById("level").textContent = Math.max(...levels).toFixed(1) + " dBFS";
  };
  const onEvent = (e, source) => {
    const top = document.getElementById("top");
    if (e.type === "start" || !top.dataset.event || top.dataset.event === e.event_id) {
      top.textContent = e.label;
      top.dataset.event = e.event_id || "";
      top.className = "big " + (e.type === "end" ? "ended" : "active");
      document.getElementById("top-detail").textContent = (source || e.source || "(device)") + " · peak " +
        num(e.peak_score, 2) + " · " + (e.type === "end" ? "ended " : "started ") + when(e.end_ts || e.start_ts);
    }
    if (e.level_dbfs !== undefined) document.getElementById("level-detail").textContent =
      "event level " + num(e.level_dbfs, 1) + " dBFS";
    if (e.type === "start") recent();
  };
  const onTop = (label, source) => {  // the device's retained top class: what it hears now ("" when nothing)
    const top = document.getElementById("top");
    top.textContent = label || "—";
    top.dataset.event = "";
    top.className = "big " + (label ? "active" : "ended");
    document.getElementById("top-detail").textContent = (source || "(device)") + " · " + when(Date.now() / 1000);
  };
  const onItem = item => {
    const kind = String(item.kind || item.type || "");
    const payload = item.payload !== undefined ? item.payload : item;
    const source = item.source !== undefined ? item.source : (payload && payload.source) || "";
    if (kind === "latest") { Object.assign(metrics, payload || {}); drawMetrics(); }
    else if (kind === "top") onTop(String(payload === null || payload === undefined ? "" : payload), source);
    else if (kind.startsWith("metrics")) { metrics[source] = payload; drawMetrics(); }
    else if (kind.startsWith("event") || (payload && payload.label && payload.event_id)) onEvent(payload, source);
    else if (kind.startsWith("status")) {
      const online = typeof payload === "string" ? payload : payload && payload.online ? "online" : "offline";
      document.getElementById("status").textContent = online;
      document.getElementById("status-detail").textContent = (source || "(device)") + " since " +
        when(Date.now() / 1000);
    }
  };
  const recent = async () => {
    try {
      const events = await getJSON("/api/events?limit=20&device=" + encodeURIComponent(id));
      const body = document.querySelector("#events tbody");
      body.replaceChildren();
      for (const e of events) body.appendChild(eventRow(e, false));
      if (events.length && document.getElementById("top").textContent === "—") onEvent(events[0], events[0].source);
    } catch (err) { showError(err); }
  };
  const conn = document.getElementById("connection");
  const stream = new EventSource("/api/live/" + encodeURIComponent(id));
  stream.onopen = () => { conn.textContent = "live"; conn.className = "conn up"; };
  stream.onerror = () => { conn.textContent = "reconnecting…"; conn.className = "conn down"; };
  window.addEventListener("pagehide", () => stream.close());  // the server gives the ingest its queue back
  window.addEventListener("pageshow", ev => { if (ev.persisted) location.reload(); });  // back from the cache
  stream.onmessage = m => { try { onItem(JSON.parse(m.data)); } catch (err) { showError(err); } };
  recent();
  getJSON("/api/devices").then(rows => {
    const mine = rows.filter(d => d.device_id === id && !d.source)[0] || rows.filter(d => d.device_id === id)[0];
    if (mine && document.getElementById("status").textContent === "—") {
      document.getElementById("status").textContent = mine.online ? "online" : mine.online === false ? "offline" :
        "unknown";
      document.getElementById("status-detail").textContent = mine.since_ts ? "since " + when(mine.since_ts) : "";
    }
  }).catch(showError);
}

function eventRow(e, withDevice) {
  const cells = [link("/event/" + encodeURIComponent(e.event_id), when(e.start_ts))];
  if (withDevice) cells.push(link("/device/" + encodeURIComponent(e.device_id), e.device_id));
  cells.push(e.source || "(device)", e.label, num(e.peak_score, 2));
  if (withDevice) cells.push(num(e.mean_score, 2));
  cells.push(e.duration_s === null || e.duration_s === undefined ? "open" : num(e.duration_s, 2) + " s" +
    (e.cut_short ? " (cut short)" : ""));
  if (withDevice) cells.push(num(e.level_dbfs, 1));
  cells.push(e.has_clip ? "▶ clip" : e.clip_status || "");
  return row(cells, e.cut_short ? "cut-short" : "");
}

// ---- timeline
async function fillSelect(id, url, chosen) {
  const select = document.getElementById(id);
  for (const value of await getJSON(url)) {
    const option = el("option", value);
    option.value = value;
    if (value === chosen) option.selected = true;
    select.appendChild(option);
  }
}

function toInput(ts) { return ts ? new Date(Number(ts) * 1000).toISOString().slice(0, 16) : ""; }

function fromInput(value) { return value ? String(Date.parse(value + ":00Z") / 1000) : ""; }

async function timeline() {
  const params = new URLSearchParams(location.search);
  const limit = 50;
  const offset = Math.max(0, parseInt(params.get("offset") || "0", 10) || 0);
  document.getElementById("f-source").value = params.get("source") || "";
  document.getElementById("f-since").value = toInput(params.get("since"));
  document.getElementById("f-until").value = toInput(params.get("until"));
  const go = off => {
    const q = new URLSearchParams();
    for (const name of ["device", "source", "label"]) {
      const v = document.getElementById("f-" + name).value;
      if (v) q.set(name, v);
    }
    for (const name of ["since", "until"]) {
      const v = fromInput(document.getElementById("f-" + name).value);
      if (v) q.set(name, v);
    }
    if (off) q.set("offset", String(off));
    location.search = q.toString();
  };
  document.getElementById("filters").addEventListener("submit", ev => { ev.preventDefault(); go(0); });
  document.getElementById("prev").addEventListener("click", () => go(Math.max(0, offset - limit)));
  document.getElementById("next").addEventListener("click", () => go(offset + limit));
  try {
    await Promise.all([fillSelect("f-device", "/api/device_ids", params.get("device")),
      fillSelect("f-label", "/api/labels", params.get("label"))]);
    const q = new URLSearchParams(params);
    q.set("limit", String(limit));
    q.set("offset", String(offset));
    const events = await getJSON("/api/events?" + q.toString());
    const body = document.querySelector("#events tbody");
    body.replaceChildren();
    for (const e of events) body.appendChild(eventRow(e, true));
    document.getElementById("page").textContent = events.length ? "events " + (offset + 1) + "–" +
      (offset + events.length) : "no events";
    document.getElementById("prev").disabled = offset === 0;
    document.getElementById("next").disabled = events.length < limit;
  } catch (err) { showError(err); }
}

// ---- one event
async function oneEvent() {
  const id = tail("/event/");
  try {
    const e = await getJSON("/api/event/" + encodeURIComponent(id));
    document.getElementById("label").textContent = e.label;
    document.title = e.label + " - event - edge-audio recorder";
    const facts = document.getElementById("facts");
    const add = (term, value) => { facts.appendChild(el("dt", term)); facts.appendChild(el("dd", value)); };
    add("Device", e.device_id);
    add("Source", e.source || "(device)");
    add("Started (UTC)", when(e.start_ts));
    add("Ended (UTC)", e.end_ts ? when(e.end_ts) : "open");
    add("Duration", e.duration_s === null || e.duration_s === undefined ? "—" : num(e.duration_s, 2) + " s");
    add("Peak score", num(e.peak_score, 3));
    add("Mean score", num(e.mean_score, 3));
    add("Level", num(e.level_dbfs, 1) + " dBFS");
    add("Cut short", e.cut_short ? "yes (ended at the next start)" : "no");
    add("Clip", e.has_clip ? "kept" : e.clip_status || "none");
    add("Event id", e.event_id);
    const devLink = link("/device/" + encodeURIComponent(e.device_id), "live view of " + e.device_id);
    facts.appendChild(el("dt", "Device page"));
    facts.appendChild(el("dd")).appendChild(devLink);
    if (e.has_clip) {
      document.getElementById("clip").hidden = false;
      document.getElementById("player").setAttribute("src", "/clip/" + encodeURIComponent(e.event_id));
      document.getElementById("spectrogram").setAttribute("src", "/clip/" + encodeURIComponent(e.event_id) +
        ".png");
    } else document.getElementById("noclip").hidden = false;
  } catch (err) { showError(err); }
}

// ---- charts
function drawChart(box, data, size, labels, colour) {
  box.replaceChildren();
  const now = Date.now() / 1000;
  const first = Math.floor(data.since / size) * size;
  const n = Math.max(1, Math.floor((now - first) / size) + 1);
  const stacks = Array.from({length: n}, () => ({}));
  for (const r of data.rows) {
    const i = Math.floor((r.bucket_ts - first) / size);
    if (i >= 0 && i < n) stacks[i][r.label] = (stacks[i][r.label] || 0) + r.count;
  }
  const totals = stacks.map(s => Object.values(s).reduce((a, b) => a + b, 0));
  const top = Math.max(1, ...totals);
  const W = 960, H = 240, left = 40, bottom = 30, plotH = H - bottom - 10, barW = (W - left - 10) / n;
  const chart = svg("svg", {viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img", class: "bars"});
  chart.appendChild(svg("line", {x1: left, y1: H - bottom, x2: W - 10, y2: H - bottom, stroke: "#888"}));
  for (const frac of [0, 0.5, 1]) {
    const t = svg("text", {x: left - 4, y: H - bottom - frac * plotH + 4, "text-anchor": "end", class: "tick"});
    t.textContent = String(Math.round(top * frac));
    chart.appendChild(t);
  }
  stacks.forEach((stack, i) => {
    let y = H - bottom;
    const x = left + i * barW;
    for (const label of labels) {
      const count = stack[label];
      if (!count) continue;
      const h = count / top * plotH;
      y -= h;
      const rect = svg("rect", {x: x + 1, y, width: Math.max(1, barW - 2), height: h, fill: colour(label),
        class: "bar", "data-count": count});
      const tip = svg("title");
      tip.textContent = when(first + i * size) + " · " + label + ": " + count;
      rect.appendChild(tip);
      chart.appendChild(rect);
    }
    if (i % Math.ceil(n / 8) === 0) {
      const t = svg("text", {x: x + barW / 2, y: H - bottom + 16, "text-anchor": "middle", class: "tick"});
      t.textContent = size < 86400 ? when(first + i * size).slice(5, 13) + "h" : when(first + i * size).slice(0, 10);
      chart.appendChild(t);
    }
  });
  box.appendChild(chart);
  if (!data.rows.length) box.appendChild(el("p", "No detections in this span.", "detail"));
}

async function charts() {
  const params = new URLSearchParams(location.search);
  document.getElementById("filters").addEventListener("submit", ev => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const name of ["device", "label"]) {
      const v = document.getElementById("f-" + name).value;
      if (v) q.set(name, v);
    }
    location.search = q.toString();
  });
  try {
    await Promise.all([fillSelect("f-device", "/api/device_ids", params.get("device")),
      fillSelect("f-label", "/api/labels", params.get("label"))]);
    const q = new URLSearchParams();
    for (const name of ["device", "label"]) if (params.get(name)) q.set(name, params.get(name));
    const [hour, day] = await Promise.all([getJSON("/api/counts?bucket=hour&" + q), getJSON("/api/counts?bucket=day&" +
      q)]);
    const labels = [...new Set([...hour.rows, ...day.rows].map(r => r.label))].sort();
    const colour = label => PALETTE[labels.indexOf(label) % PALETTE.length];
    drawChart(document.getElementById("chart-hour"), hour, 3600, labels, colour);
    drawChart(document.getElementById("chart-day"), day, 86400, labels, colour);
    const legend = document.getElementById("legend");
    for (const label of labels) {
      const item = el("span", null, "legend-item");
      const swatch = svg("svg", {width: 12, height: 12});
      swatch.appendChild(svg("rect", {width: 12, height: 12, fill: colour(label)}));
      item.appendChild(swatch);
      item.appendChild(el("span", label));
      legend.appendChild(item);
    }
  } catch (err) { showError(err); }
}

const PAGES = {fleet, device, events: timeline, event: oneEvent, charts};
document.addEventListener("DOMContentLoaded", () => {
  const page = PAGES[document.body.dataset.page];
  if (page) page();
  if (document.body.dataset.page === "fleet") setInterval(fleet, 10000);
});
