// Hedgeway dashboard: vanilla JS, inline SVG charts, no third-party code. The key lives in sessionStorage
// and travels only in the Authorization header of same-origin fetches (never in a URL).
"use strict";
const STORE = "hedgeway.ui.key";
const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#2458a6", "#e67e22", "#27ae60", "#8e44ad", "#c0392b", "#16a085", "#d4ac0d", "#7f8c8d"];
const $ = (id) => document.getElementById(id);

function el(tag, attrs, text) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}
// Sub-cent amounts (a single request, a tiny budget) keep their significant digits instead of reading $0.00.
const usd = (s) => { const n = Number(s);
  return "$" + (n !== 0 && Math.abs(n) < 0.01 ? n.toFixed(10).replace(/0+$/, "")
                : n.toLocaleString("en-US", {minimumFractionDigits: 2, maximumFractionDigits: 4})); };
const pct = (x) => x === null || x === undefined ? "–" : (100 * x).toFixed(1) + "%";
const num = (x) => x === null || x === undefined ? "–" : String(x);
const label = (name) => name === null || name === undefined ? "(none)" : String(name);

async function api(panel, params) {
  const query = new URLSearchParams(params || {}).toString();
  const resp = await fetch("/ui/api/" + panel + (query ? "?" + query : ""),
                           {headers: {"Authorization": "Bearer " + sessionStorage.getItem(STORE)}});
  const body = await resp.json();
  if (!resp.ok) { const e = new Error(body.error ? body.error.message : resp.statusText); e.status = resp.status; throw e; }
  return body;
}

// Stacked bars: one bar per period, one segment per series.
function stackedBars(target, periods, series) {
  target.replaceChildren();
  const W = 900, H = 260, L = 64, B = 28, T = 8;
  const totals = periods.map((_, i) => series.reduce((s, x) => s + Number(x.cost[i]), 0));
  const max = Math.max(...totals, 1e-9);
  const svg = el("svg:svg", {viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "spend over time"});
  for (let g = 0; g <= 4; g++) {
    const y = T + (H - B - T) * (1 - g / 4);
    svg.append(el("svg:line", {x1: L, x2: W, y1: y, y2: y, stroke: "#e3e7ee"}));
    svg.append(el("svg:text", {x: L - 6, y: y + 4, "text-anchor": "end"}, "$" + Number((max * g / 4).toPrecision(2))));
  }
  const slot = (W - L) / Math.max(periods.length, 1), bw = Math.max(2, slot * 0.7);
  periods.forEach((p, i) => {
    let y = H - B;
    series.forEach((s, k) => {
      const h = (H - B - T) * Number(s.cost[i]) / max;
      if (h <= 0) return;
      y -= h;
      const r = el("svg:rect", {x: L + i * slot + (slot - bw) / 2, y, width: bw, height: h, fill: COLORS[k % COLORS.length],
                                class: "bar", "data-period": p, "data-series": label(s.name)});
      r.append(el("svg:title", {}, `${p} · ${label(s.name)}: ${usd(s.cost[i])} (${s.requests[i]} requests)`));
      svg.append(r);
    });
    if (periods.length <= 16 || i % Math.ceil(periods.length / 16) === 0)
      svg.append(el("svg:text", {x: L + i * slot + slot / 2, y: H - 10, "text-anchor": "middle"}, p));
  });
  target.append(svg);
}

// Horizontal bars with a value label: rows of {name, value, text}.
function hbars(target, rows) {
  target.replaceChildren();
  if (!rows.length) { target.append(el("p", {class: "empty"}, "no data")); return; }
  const W = 420, R = 22, L = 130, H = rows.length * R + 4;
  const max = Math.max(...rows.map((r) => r.value), 1e-9);
  const svg = el("svg:svg", {viewBox: `0 0 ${W} ${H}`, role: "img"});
  rows.forEach((r, i) => {
    svg.append(el("svg:text", {x: L - 6, y: i * R + 15, "text-anchor": "end"}, label(r.name).slice(0, 20)));
    const w = Math.max(1, (W - L - 90) * r.value / max);
    svg.append(el("svg:rect", {x: L, y: i * R + 4, width: w, height: R - 8, fill: COLORS[i % COLORS.length], class: "bar",
                               "data-name": label(r.name)}));
    svg.append(el("svg:text", {x: L + w + 4, y: i * R + 15, class: "value"}, r.text));
  });
  target.append(svg);
}

function table(target, head, rows, empty) {
  target.replaceChildren();
  if (!rows.length) { target.append(el("caption", {class: "empty"}, empty || "none")); return; }
  const tr = el("tr");
  head.forEach((h) => tr.append(el("th", {class: h.num ? "num" : ""}, h.title || h)));
  const thead = el("thead");
  thead.append(tr);
  target.append(thead);
  const body = el("tbody");
  rows.forEach((row) => {
    const r = el("tr");
    row.forEach((cell, i) => {
      const td = el("td", {class: head[i].num ? "num" : ""}, cell && cell.text !== undefined ? cell.text : num(cell));
      if (cell && cell.state) td.className = "state-" + cell.state;
      if (cell && cell.title) td.title = cell.title;
      r.append(td);
    });
    body.append(r);
  });
  target.append(body);
}

const RENDER = {
  spend(d) {
    $("spend-total").textContent = `${usd(d.totals.cost)} · ${d.totals.requests} requests`;
    stackedBars($("spend-chart"), d.periods, d.series);
    const legend = $("spend-legend");
    legend.replaceChildren();
    d.series.forEach((s, k) => {
      const i = el("i"); i.style.background = COLORS[k % COLORS.length];
      const span = el("span", {"data-series": label(s.name)}); span.append(i, `${label(s.name)} ${usd(s.total)}`);
      legend.append(span);
    });
  },
  routes(d) {
    const total = d.tiers.reduce((s, r) => s + r.requests, 0) || 1;
    hbars($("tiers"), d.tiers.map((r) => ({name: r.name, value: r.requests,
                                           text: `${r.requests} · ${pct(r.requests / total)}`})));
    hbars($("deployments"), d.deployments.map((r) => ({name: r.name, value: r.requests,
                                                       text: `${r.requests} · ${usd(r.cost)}`})));
  },
  cache(d) {
    $("hit-rate").textContent = pct(d.hit_rate);
    $("saved").textContent = usd(d.saved);
    hbars($("cache-chart"), Object.entries(d.outcomes).map(([k, v]) => ({name: k, value: v, text: String(v)})));
  },
  errors(d) {
    $("error-rate").textContent = d.requests ? pct(d.errors / d.requests)
      + (d.estimated ? ` · ${d.estimated} with estimated usage` : "") : "";
    hbars($("errors-chart"), d.models.map((m) => ({name: m.model, value: m.error_rate,
                                                   text: `${pct(m.error_rate)} (${m.errors}/${m.requests})`})));
    table($("error-types"), ["error type", {title: "count", num: 1}], Object.entries(d.types), "no errors");
  },
  latency(d) {
    const n = {num: 1};
    table($("latency"), ["model", {title: "requests", ...n}, {title: "p50", ...n}, {title: "p90", ...n},
                         {title: "p99", ...n}, {title: "TTFT p50", ...n}, {title: "TTFT p90", ...n}, {title: "TTFT p99", ...n}],
          d.models.map((m) => [m.model, m.requests, m.latency_ms.p50, m.latency_ms.p90, m.latency_ms.p99,
                               m.ttft_ms.p50, m.ttft_ms.p90, m.ttft_ms.p99]), "no successful requests");
  },
  live(d) {
    table($("budgets"), ["scope", "period", {title: "spent", num: 1}, {title: "limit", num: 1}, {title: "used", num: 1}, "state"],
          d.budgets.map((b) => [b.scope, b.period, usd(b.spent), usd(b.limit), pct(b.ratio), {text: b.state, state: b.state}]),
          "no budgets settled yet");
    table($("breakers"), ["deployment", "state", {title: "calls", num: 1}, {title: "error rate", num: 1}, {title: "latency ms", num: 1}],
          Object.entries(d.breakers).map(([k, h]) => [k, {text: h.state, state: h.state}, h.calls, pct(h.error_rate), h.latency_ms]),
          "no deployments");
    table($("canaries"), ["canary", "model → candidate", "state", {title: "share", num: 1}],
          d.canaries.map((c) => [c.name, `${c.model} → ${c.candidate}`, {text: c.state, state: c.state}, pct(c.share)]),
          "no canaries");
    // each trained route: its proof, and the share of its requests that went below its top tier (savings)
    table($("proof"), ["route", "version", "status", {title: "labels", num: 1}, "APGR (95% CI)", "random band",
                       {title: "below top tier", num: 1}],
          Object.entries(d.proof).map(([name, p]) => {
            const tiers = d.routes[name] || {};
            const total = Object.values(tiers).reduce((a, b) => a + b, 0);
            const top = tiers.complex !== undefined ? "complex" : tiers.medium !== undefined ? "medium" : "simple";
            const state = p.proven ? "proven" : "unproven";
            return [name, p.version || "", {text: state, state: p.proven ? "closed" : "open", title: p.why}, p.n,
                    `${p.apgr.toFixed(3)} (${p.ci[0].toFixed(3)}–${p.ci[1].toFixed(3)})`,
                    `${p.random_band[0].toFixed(3)}–${p.random_band[1].toFixed(3)}`,
                    total ? pct((total - (tiers[top] || 0)) / total) : ""];
          }), "no trained routes");
  },
};

async function refresh() {
  const f = {since: $("since").value, period: $("period").value, by: $("by").value};
  const params = {spend: f, live: {}};
  $("status").textContent = "";
  document.body.dataset.loading = "1";
  const jobs = Object.keys(RENDER).map(async (panel) => {
    const d = await api(panel, params[panel] || {since: f.since});
    RENDER[panel](d);
  });
  const results = await Promise.allSettled(jobs);
  const failed = results.find((r) => r.status === "rejected");
  if (failed) {
    if (failed.reason.status === 401 || failed.reason.status === 403) return signOut(failed.reason.message);
    $("status").textContent = failed.reason.message;
  }
  document.body.dataset.loading = "";
  document.body.dataset.loaded = String(Date.now());
}

function show(signedIn) {
  $("login").hidden = signedIn;
  $("panels").hidden = !signedIn;
  $("filters").hidden = !signedIn;
}

function signOut(message) {
  sessionStorage.removeItem(STORE);
  show(false);
  $("login-error").textContent = message || "";
  document.body.dataset.loading = "";
}

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(STORE, $("key").value.trim());
    $("key").value = "";
    show(true);
    refresh();
  });
  $("logout").addEventListener("click", () => signOut(""));
  $("refresh").addEventListener("click", refresh);
  ["since", "period", "by"].forEach((id) => $(id).addEventListener("change", refresh));
  if (sessionStorage.getItem(STORE)) { show(true); refresh(); } else show(false);
});
