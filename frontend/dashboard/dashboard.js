// h2pool's dashboard: polls /status once a second and draws it.  No library, no network but
// this server; every value from the server goes in as text (textContent), never as markup.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const WINDOW_S = 300;
const $ = (id) => document.getElementById(id);

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}

function svgEl(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}

function fmtNumber(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (v >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (v >= 1e4) return (v / 1e3).toFixed(1) + "k";
  if (Number.isInteger(v)) return String(v);
  return v < 10 ? v.toFixed(2) : v.toFixed(1);
}

function fmtMs(v) {
  if (v === null || v === undefined || v < 0) return "–";
  if (v >= 1000) return (v / 1000).toFixed(2) + " s";
  return (v < 10 ? v.toFixed(2) : v.toFixed(0)) + " ms";
}

function fmtUptime(s) {
  s = Math.floor(s);
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  if (d) return d + "d " + h + "h";
  if (h) return h + "h " + m + "m";
  return m + "m " + (s % 60) + "s";
}

// A "nice" upper bound for an axis: 1, 2, 5 times a power of ten.
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

// Draws series [{values, color, area}] against times (unix s) into an SVG chart.
function drawChart(svg, times, series, unitFmt) {
  const W = Math.max(200, Math.round(svg.clientWidth || 600)), H = 190;
  const left = 46, right = 8, top = 8, bottom = 20, pw = W - left - right, ph = H - top - bottom;
  svg.setAttribute("viewBox", "0 0 " + W + " " + H);
  svg.removeAttribute("preserveAspectRatio");
  while (svg.firstChild) svg.removeChild(svg.firstChild);

  const now = times.length ? times[times.length - 1] : Date.now() / 1000;
  let max = 0;
  for (const s of series) for (const v of s.values) if (v !== null && v > max) max = v;
  max = niceMax(max);
  const x = (t) => left + pw * (1 - (now - t) / WINDOW_S);
  const y = (v) => top + ph * (1 - v / max);

  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4, yy = y(v);
    svg.appendChild(svgEl("line", { class: "grid", x1: left, x2: W - right, y1: yy, y2: yy }));
    svg.appendChild(svgEl("text", { x: left - 6, y: yy + 4, "text-anchor": "end" }, unitFmt(v)));
  }
  for (const ago of [300, 240, 180, 120, 60, 0]) {
    const xx = x(now - ago);
    svg.appendChild(svgEl("text", { x: xx, y: H - 4, "text-anchor": ago === 300 ? "start" : ago === 0 ? "end" : "middle" },
                          ago === 0 ? "now" : "-" + ago / 60 + "m"));
  }

  let drawn = 0;
  for (const s of series) {
    // a gap (null: no request in that second) splits the line
    let run = [];
    const flush = () => {
      if (run.length === 0) return;
      if (s.area && run.length > 1) {
        const pts = run.map((p) => p.join(",")).join(" ");
        svg.appendChild(svgEl("polygon", { class: "area", fill: s.color,
          points: run[0][0] + "," + y(0) + " " + pts + " " + run[run.length - 1][0] + "," + y(0) }));
      }
      svg.appendChild(svgEl("polyline", { stroke: s.color, points: run.map((p) => p.join(",")).join(" "),
                                          "data-series": s.name }));
      run = [];
    };
    for (let i = 0; i < times.length; i++) {
      const v = s.values[i];
      if (v === null || v === undefined || now - times[i] > WINDOW_S) { flush(); continue; }
      run.push([x(times[i]).toFixed(1), y(v).toFixed(1)]);
      drawn++;
    }
    flush();
  }
  svg.setAttribute("data-samples", String(times.length));
  svg.setAttribute("data-points", String(drawn));
}

function drawSpark(svg, busy, queued, max) {
  const W = Math.max(100, Math.round(svg.clientWidth || 300)), H = 42;
  svg.setAttribute("viewBox", "0 0 " + W + " " + H);
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const n = Math.max(busy.length, 2);
  for (const v of busy.concat(queued)) if (v > max) max = v;
  max = Math.max(1, max);
  const line = (values, color) => {
    if (values.length === 0) return;
    const pts = values.map((v, i) => ((W * (WINDOW_S - values.length + i)) / (WINDOW_S - 1)).toFixed(1) + "," +
                                     (H - 2 - ((H - 4) * v) / max).toFixed(1));
    svg.appendChild(svgEl("polyline", { stroke: color, points: pts.join(" ") }));
  };
  line(queued, "#d33a2c");
  line(busy, "#e08a00");
  svg.setAttribute("data-samples", String(n));
}

function renderPools(pools) {
  const box = $("pools");
  while (box.firstChild) box.removeChild(box.firstChild);
  if (pools.length === 0) box.appendChild(el("div", { class: "none" }, "no pools"));
  for (const p of pools) {
    const card = el("div", { class: "card pool", "data-pool": p.name, "data-state": p.state });
    const top = el("div", { class: "top" });
    top.appendChild(el("span", { class: "name" }, p.name));
    top.appendChild(el("span", { class: "badge " + p.state }, p.state));
    if (p.external) top.appendChild(el("span", { class: "none" }, "external workers (connect:)"));
    card.appendChild(top);
    if (p.stopped_by) card.appendChild(el("div", { class: "why" }, "stopped by " + p.stopped_by));

    const w = p.workers;
    const grid = el("div", { class: "workers" });
    const list = p.worker_list || [];
    for (const wk of list) {
      const title = (wk.pid ? "pid " + wk.pid : wk.endpoint || "") + " · " + wk.state + " · " + wk.requests + " requests";
      grid.appendChild(el("div", { class: "worker " + wk.state, title: title, "data-pid": wk.pid || "" }));
    }
    if (list.length === 0) grid.appendChild(el("span", { class: "none" }, "no worker running (started on the first request)"));
    card.appendChild(grid);

    const counts = el("div", { class: "counts" });
    const count = (label, v) => {
      const s = el("span", {}, label + " ");
      s.appendChild(el("b", {}, fmtNumber(v)));
      counts.appendChild(s);
    };
    count("busy", w.busy); count("idle", w.idle); count("starting", w.starting); count("stopping", w.stopping);
    count("max", p.max_processes);
    card.appendChild(counts);

    const q = el("div", { class: "queue" }, "queue " + p.queue + " / " + p.queue_length);
    const bar = el("div", { class: "bar" });
    const fill = el("div", {});
    fill.style.width = Math.min(100, (100 * p.queue) / Math.max(1, p.queue_length)) + "%";
    bar.appendChild(fill);
    q.appendChild(bar);
    card.appendChild(q);

    const spark = svgEl("svg", { class: "spark" });
    card.appendChild(spark);
    const stats = el("div", { class: "counts" });
    card.appendChild(stats);
    box.appendChild(card);
    drawSpark(spark, p.history.busy, p.history.queued, p.max_processes);
    const stat = (label, v) => {
      const s = el("span", {}, label + " ");
      s.appendChild(el("b", {}, v));
      stats.appendChild(s);
    };
    stat("requests", fmtNumber(p.requests_total));
    stat("5xx", fmtNumber(p.by_class["5xx"]));
    stat("p50", fmtMs(p.latency.p50_ms));
    stat("p99", fmtMs(p.latency.p99_ms));
    stat("spawns", fmtNumber(p.spawns_total));
    stat("crashes", fmtNumber(p.crashes_total));
    stat("recycles", fmtNumber(p.recycles_total));
    stat("rapid-fail trips", fmtNumber(p.rapid_fail_trips_total));
    stat("protocol violations", fmtNumber(p.protocol_violations_total));
  }
}

function renderSites(sites) {
  const body = $("sites").tBodies[0];
  while (body.firstChild) body.removeChild(body.firstChild);
  for (const s of sites) {
    const tr = el("tr", { "data-site": s.name });
    tr.appendChild(el("td", {}, s.name));
    const state = el("td");
    state.appendChild(el("span", { class: "badge " + s.state }, s.state));
    tr.appendChild(state);
    tr.appendChild(el("td", {}, s.bindings.join(" ")));
    for (const v of [s.requests_total, s.by_class["2xx"], s.by_class["3xx"], s.by_class["4xx"], s.by_class["5xx"]])
      tr.appendChild(el("td", { class: "n" }, fmtNumber(v)));
    tr.appendChild(el("td", { class: "n" }, fmtMs(s.latency.p50_ms).replace(" ms", "")));
    tr.appendChild(el("td", { class: "n" }, fmtMs(s.latency.p99_ms).replace(" ms", "")));
    body.appendChild(tr);
  }
}

function renderErrors(errors) {
  const list = $("errors");
  while (list.firstChild) list.removeChild(list.firstChild);
  if (errors.length === 0) list.appendChild(el("li", { class: "none" }, "none"));
  for (let i = errors.length - 1; i >= 0; i--) list.appendChild(el("li", { class: errors[i].level }, errors[i].line));
}

function last(values) {
  for (let i = values.length - 1; i >= 0; i--) if (values[i] !== null) return values[i];
  return null;
}

function render(st) {
  $("meta").textContent = "version " + st.version + " · pid " + st.pid + " · up " + fmtUptime(st.uptime_s) +
    " · configuration generation " + st.generation + " · " + st.threads + " threads";
  const h = st.history;
  $("t-rps").textContent = fmtNumber(st.requests.per_second);
  const recent99 = h.p99_ms.slice(-60).filter((v) => v !== null);
  $("t-p99").textContent = fmtMs(recent99.length ? Math.max.apply(null, recent99) : null);
  const eps = last(h.errors_per_s);
  $("t-eps").textContent = fmtNumber(eps === null ? 0 : eps);
  $("t-eps").className = "value" + (eps > 0 ? " bad" : "");
  $("t-inflight").textContent = fmtNumber(st.requests.in_flight);
  $("t-conns").textContent = fmtNumber(st.connections.current);
  $("t-total").textContent = fmtNumber(st.requests.requests_total);

  drawChart($("chart-rps"), h.time, [
    { name: "requests", values: h.requests_per_s, color: "#2f6fdf", area: true },
    { name: "5xx", values: h.errors_per_s, color: "#d33a2c" },
  ], fmtNumber);
  drawChart($("chart-latency"), h.time, [
    { name: "p50", values: h.p50_ms, color: "#1f9d55" },
    { name: "p99", values: h.p99_ms, color: "#e08a00" },
  ], (v) => fmtNumber(v));
  renderPools(st.pools);
  renderSites(st.sites);
  renderErrors(st.recent_errors || []);
}

let failures = 0;
function poll() {
  fetch("/status", { cache: "no-store" })
    .then((r) => { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
    .then((st) => {
      failures = 0;
      render(st);
      $("dot").className = "dot ok";
      $("live").textContent = "live · " + new Date(st.time * 1000).toLocaleTimeString();
    })
    .catch((e) => {
      failures++;
      $("dot").className = "dot down";
      $("live").textContent = "no answer from h2pool (" + e.message + "), retrying";
    })
    .finally(() => setTimeout(poll, failures > 5 ? 5000 : 1000));
}

poll();
