"""The report's stylesheet and script, inlined into every report (no network, no CDN).

The script reads the study data from ``<script type="application/json" id="report-data">`` and
builds the example browser with ``textContent`` and ``new Option`` only: no data ever reaches
``innerHTML``. The report's Content-Security-Policy allows this one script (by its hash) and
nothing else.
"""

from __future__ import annotations

CSS = """
:root { --fg: #1d2330; --muted: #5b6473; --line: #d9dee7; --bg: #ffffff; --soft: #f5f7fa;
  --accent: #2458b3; --best: #0f7a3d; --ref: #e0a100; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans",
  sans-serif; color: var(--fg); background: var(--bg); }
header { background: #fff; border-bottom: 1px solid
  var(--line); padding: 10px 24px 8px; }
header h1 { font-size: 19px; margin: 0 0 2px; }
header .sub { color: var(--muted); font-size: 12.5px; }
nav { margin-top: 6px; display: flex; gap: 14px; flex-wrap: wrap; }
nav a { color: var(--accent); text-decoration: none; font-weight: 600; font-size: 13px; }
nav a:hover { text-decoration: underline; }
main { max-width: 1320px; margin: 0 auto; padding: 8px 24px 60px; }
section { padding-top: 14px; }
h2 { font-size: 18px; border-bottom: 2px solid var(--line); padding-bottom: 4px; margin: 18px 0
  10px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
p.note, .note { color: var(--muted); font-size: 12.5px; }
table { border-collapse: collapse; margin: 6px 0 14px; font-size: 12.5px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 9px; text-align: right;
  vertical-align: top; white-space: nowrap; }
th { background: var(--soft); font-weight: 600; }
th:first-child, td:first-child, td.l, th.l { text-align: left; }
td.wrap { white-space: normal; max-width: 420px; text-align: left; }
.scroll { overflow-x: auto; }
td.best { color: var(--best); font-weight: 700; }
td.best::after { content: " \\2605"; }
td.baseline, th.baseline { color: var(--muted); font-style: italic; background: #fafafa; }
td.chance { color: #8a93a3; }
.arrow { color: var(--muted); }
figure { margin: 10px 0 22px; }
figure svg { max-width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: 12.5px; max-width: 900px; }
details > summary { cursor: pointer; color: var(--accent); margin: 6px 0; }
pre { background: var(--soft); padding: 10px; overflow-x: auto; font-size: 12px; }
.controls { display: flex; flex-wrap: wrap; gap: 10px 16px; align-items: center; background:
  var(--soft); padding: 8px 10px; border: 1px solid var(--line); border-radius: 6px; }
.controls label { font-size: 12.5px; color: var(--muted); }
.controls select, .controls input { margin-left: 4px; font: inherit; font-size: 13px; }
.browser { display: grid; grid-template-columns: minmax(220px, 330px) 1fr; gap: 14px;
  margin-top: 10px; }
.ex-list { list-style: none; margin: 0; padding: 0; max-height: 640px; overflow-y: auto;
  border: 1px solid var(--line); border-radius: 6px; }
.ex-list li { border-bottom: 1px solid var(--line); }
.ex-item { display: block; width: 100%; text-align: left; background: none; border: 0;
  padding: 6px 9px; font: inherit; font-size: 12.5px; cursor: pointer; color: var(--fg); }
.ex-item:hover { background: var(--soft); }
.ex-item.active { background: #e6eefc; box-shadow: inset 3px 0 0 var(--accent); }
.ex-item .meta { display: block; color: var(--muted); font-size: 11.5px; }
.badge { display: inline-block; font-size: 11px; padding: 0 6px; border-radius: 8px;
  background: #e9ecf1; color: var(--fg); margin-right: 4px; }
.badge.ok { background: #dff3e6; color: #0f5f31; }
.badge.bad { background: #fbe3e3; color: #9b1c1c; }
.ex-detail { min-width: 0; }
.ex-head { margin-bottom: 8px; }
.ex-head .id { color: var(--muted); font-size: 12px; }
.heat-table { width: 100%; }
.heat-table td { white-space: normal; text-align: left; }
.heat-table td.name { white-space: nowrap; font-weight: 600; width: 1%; }
.heat-table td.rt { white-space: nowrap; color: var(--muted); width: 1%; text-align: right; }
.heat { line-height: 2.0; font-size: 13.5px; }
.heat .u { border-radius: 3px; padding: 1px 1px; }
.heat .u.ref { box-shadow: inset 0 -3px 0 var(--ref); }
.heat mark { background: #ffe79a; border-radius: 3px; padding: 1px 1px; }
.trunc { color: #8a93a3; text-decoration: underline dotted; }
.gen-heat td.gen-text, .gen-heat td.gen-out { line-height: 1.9; }
.gen-heat .gu { border-radius: 3px; padding: 1px 2px; }
.gen-heat .go { color: #8a93a3; }
.gen-heat td.gen-out { font-style: italic; }
.gen-matrix td, .gen-matrix th { text-align: right; font-variant-numeric: tabular-nums; font-size: 12px; padding: 2px 5px; }
.gen-matrix td.l { text-align: left; }
.heat .sep { color: var(--muted); padding: 0 6px; }
.ebars { display: block; margin-top: 2px; }
.ebars .bar-pos { fill: rgb(220,38,38); } .ebars .bar-neg { fill: rgb(37,99,235); }
.ebars .whisker { stroke: #1d2330; stroke-width: 1; } .ebars .zero { stroke: var(--muted); }
.scale { display: inline-block; width: 160px; height: 10px; vertical-align: middle; background:
  linear-gradient(90deg, rgb(37,99,235), #fff, rgb(220,38,38)); border: 1px solid var(--line); }
.refkey { box-shadow: inset 0 -3px 0 var(--ref); padding: 0 3px; }
.empty { color: var(--muted); padding: 12px; }
@media (max-width: 800px) { .browser { grid-template-columns: 1fr; } }
"""

JS = r"""
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("report-data").textContent);
  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var n = document.createElement(tag);
    if (cls) { n.className = cls; }
    if (text !== undefined && text !== null) { n.textContent = String(text); }
    return n;
  }
  function uniq(xs) { return xs.filter(function (x, i) { return xs.indexOf(x) === i; }); }
  var S = { d: $("ex-dataset"), m: $("ex-model"), s: $("ex-seed"), y: $("ex-label"),
            c: $("ex-outcome"), q: $("ex-search") };
  var list = $("ex-list"), detail = $("ex-detail"), count = $("ex-count");
  var state = { visible: [], pos: -1, x: null };
  if (!list) { return; }

  function fill(select, options) {
    var old = select.value;
    select.textContent = "";
    options.forEach(function (o) { select.appendChild(new Option(o[1], String(o[0]))); });
    if (options.some(function (o) { return String(o[0]) === old; })) { select.value = old; }
  }
  function run() {
    var d = +S.d.value, m = +S.m.value, s = +S.s.value;
    return D.runs.filter(function (r) { return r.d === d && r.m === m && r.s === s; })[0];
  }
  function labelName(ds, y) {
    var names = (D.datasets[ds] || {}).labels || [];
    return (y === null || y === undefined) ? "unlabelled" : (names[y] !== undefined ? names[y] : String(y));
  }
  function onDataset() {
    var d = +S.d.value;
    var runs = D.runs.filter(function (r) { return r.d === d; });
    fill(S.m, uniq(runs.map(function (r) { return r.m; })).map(function (m) { return [m, D.models[m]]; }));
    var labels = (D.datasets[d] || {}).labels || [];
    fill(S.y, [["", "all"]].concat(labels.map(function (l, i) { return [i, l]; })));
    onModel();
  }
  function onModel() {
    var d = +S.d.value, m = +S.m.value;
    var seeds = D.runs.filter(function (r) { return r.d === d && r.m === m; })
      .map(function (r) { return r.s; });
    fill(S.s, uniq(seeds).map(function (s) { return [s, s]; }));
    update();
  }
  function keep(item) {
    var ex = D.examples[item.x];
    if (S.y.value !== "" && String(ex.y) !== S.y.value) { return false; }
    var ok = ex.y !== null && item.p === ex.y;
    if (S.c.value === "correct" && !ok) { return false; }
    if (S.c.value === "incorrect" && (ok || ex.y === null)) { return false; }
    var q = S.q.value.trim().toLowerCase();
    if (q && (ex.text + " " + (ex.pair || "") + " " + ex.id).toLowerCase().indexOf(q) < 0) {
      return false;
    }
    return true;
  }
  function update() {
    var r = run();
    state.visible = r ? r.items.filter(keep) : [];
    list.textContent = "";
    count.textContent = state.visible.length + " of " + (r ? r.items.length : 0) + " examples";
    state.visible.forEach(function (item, i) {
      var ex = D.examples[item.x];
      var li = el("li"), b = el("button", "ex-item");
      b.type = "button";
      b.setAttribute("data-index", String(i));
      var text = ex.text + (ex.pair ? " \u2016 " + ex.pair : "");
      b.appendChild(el("span", "txt", text.length > 110 ? text.slice(0, 107) + "\u2026" : text));
      var meta = el("span", "meta");
      var ok = ex.y !== null && item.p === ex.y;
      meta.appendChild(el("span", "badge", labelName(r.d, ex.y)));
      if (ex.y !== null) { meta.appendChild(el("span", "badge " + (ok ? "ok" : "bad"), ok ? "correct" : "wrong")); }
      b.appendChild(meta);
      b.addEventListener("click", function () { show(i); });
      li.appendChild(b);
      list.appendChild(li);
    });
    var at = state.visible.map(function (it) { return it.x; }).indexOf(state.x);
    show(at >= 0 ? at : 0);
  }
  function show(i) {
    var r = run();
    detail.textContent = "";
    var buttons = list.querySelectorAll(".ex-item");
    for (var k = 0; k < buttons.length; k++) { buttons[k].classList.toggle("active", k === i); }
    if (!r || !state.visible.length) {
      detail.appendChild(el("p", "empty", D.runs.length ? "No example matches the filters." :
        "This study has no explanations yet."));
      state.pos = -1;
      return;
    }
    state.pos = i;
    var item = state.visible[i], ex = D.examples[item.x];
    state.x = item.x;
    if (buttons[i] && buttons[i].scrollIntoView) { buttons[i].scrollIntoView({ block: "nearest" }); }
    var head = el("div", "ex-head");
    var h = el("h3", null, "Example " + (i + 1) + " of " + state.visible.length);
    head.appendChild(h);
    head.appendChild(el("div", "id", ex.id));
    var p = el("p");
    var ok = ex.y !== null && item.p === ex.y;
    p.appendChild(el("span", "badge", "gold: " + labelName(r.d, ex.y)));
    p.appendChild(el("span", "badge" + (ex.y === null ? "" : ok ? " ok" : " bad"),
      "predicted: " + labelName(r.d, item.p) +
      (item.pp === null ? "" : " (p=" + item.pp.toFixed(3) + ")")));
    p.appendChild(el("span", "badge", "explaining: " + item.t));
    head.appendChild(p);
    detail.appendChild(head);
    var table = el("table", "heat-table"), tb = el("tbody");
    var ds = D.datasets[r.d] || {};
    var refName = ds.reference || "rationale";
    var tr = el("tr");
    tr.appendChild(el("td", "name", refName));
    var cell = el("td");
    if (ex.r === null) {
      cell.appendChild(el("span", "note", ds.note || "no rationale for this dataset"));
    } else {
      cell.appendChild(rationale(ex));
      if (!ex.r.length) { cell.appendChild(el("span", "note", "  (none in this example)")); }
    }
    tr.appendChild(cell);
    tr.appendChild(el("td", "rt", "s/expl."));
    tb.appendChild(tr);
    var ref = {};
    item.ref.forEach(function (u) { ref[u] = true; });
    D.explainers.forEach(function (name, e) {
      var entry = item.e[e];
      if (!entry) { return; }
      var row = el("tr");
      row.appendChild(el("td", "name", name));
      var c = el("td");
      c.appendChild(heat(ex, entry[3] || item.u, entry, entry[3] ? {} : ref));
      if (entry[4]) { c.appendChild(errorBars(ex, entry[3] || item.u, entry)); }
      row.appendChild(c);
      row.appendChild(el("td", "rt", seconds(entry[2])));
      tb.appendChild(row);
    });
    table.appendChild(tb);
    detail.appendChild(table);
  }
  function seconds(v) {
    if (v === null || v === undefined) { return "\u2014"; }
    if (v === 0) { return "0"; }
    return v >= 10 ? v.toFixed(0) : v >= 0.01 ? v.toFixed(3) : v.toExponential(1);
  }
  function part(ex, k) { return k === 0 ? ex.text : (ex.pair || ""); }
  function rationale(ex) {
    var box = el("div", "heat");
    [0, 1].forEach(function (k) {
      if (k === 1 && ex.pair === null) { return; }
      if (k === 1) { box.appendChild(el("span", "sep", "\u2016")); }
      var s = part(ex, k), pos = 0;
      ex.r.filter(function (sp) { return sp[0] === k; }).forEach(function (sp) {
        if (sp[1] > pos) { box.appendChild(document.createTextNode(s.slice(pos, sp[1]))); }
        box.appendChild(el("mark", null, s.slice(Math.max(pos, sp[1]), sp[2])));
        pos = Math.max(pos, sp[2]);
      });
      box.appendChild(document.createTextNode(s.slice(pos)));
    });
    return box;
  }
  function colour(v) {
    var a = Math.min(1, Math.abs(v));
    var t = v >= 0 ? [220, 38, 38] : [37, 99, 235];
    var c = t.map(function (x) { return Math.round(255 + a * (x - 255)); });
    return ["rgb(" + c.join(",") + ")", a > 0.55 ? "#fff" : "#1d2330"];
  }
  function svg(tag, attrs) {
    var n = document.createElementNS("http://www.w3.org/2000/svg", tag);
    Object.keys(attrs).forEach(function (k) { n.setAttribute(k, attrs[k]); });
    return n;
  }
  function errorBars(ex, u, entry) {  // scores with their 95 % error bars, one bar per unit
    var q = entry[1], e = entry[4], scale = entry[0], w = 12, h = 44, mid = h / 2;
    var box = svg("svg", {"class": "ebars", width: w * q.length + 2, height: h});
    box.appendChild(svg("line", {"class": "zero", x1: 0, x2: w * q.length + 2, y1: mid, y2: mid}));
    var top = 0;
    q.forEach(function (v, j) { top = Math.max(top, Math.abs(v) + e[j]); });
    top = top || 1;
    q.forEach(function (v, j) {
      var y = mid - v / top * (mid - 2), x = 1 + j * w;
      var g = svg("g", {});
      var t = svg("title", {});
      var k = u[3 * j], s = part(ex, k).slice(u[3 * j + 1], u[3 * j + 2]);
      t.textContent = s + ": " + (v / 1000 * scale).toPrecision(3) + " \u00b1 " +
        (e[j] / 1000 * scale).toPrecision(2) + " (95 %)";
      g.appendChild(t);
      g.appendChild(svg("rect", {"class": v >= 0 ? "bar-pos" : "bar-neg", x: x + 2, width: w - 4,
                                 y: Math.min(y, mid), height: Math.max(Math.abs(mid - y), 0.5)}));
      var lo = mid - (v - e[j]) / top * (mid - 2), hi = mid - (v + e[j]) / top * (mid - 2);
      g.appendChild(svg("line", {"class": "whisker", x1: x + w / 2, x2: x + w / 2, y1: lo, y2: hi}));
      [lo, hi].forEach(function (yy) {
        g.appendChild(svg("line", {"class": "whisker", x1: x + 3, x2: x + w - 3, y1: yy, y2: yy}));
      });
      box.appendChild(g);
    });
    return box;
  }
  function heat(ex, u, entry, ref) {
    var box = el("div", "heat"), scale = entry[0], q = entry[1];
    [0, 1].forEach(function (k) {
      if (k === 1 && ex.pair === null) { return; }
      if (k === 1) { box.appendChild(el("span", "sep", "\u2016")); }
      var s = part(ex, k), pos = 0;
      for (var j = 0; 3 * j < u.length; j++) {
        if (u[3 * j] !== k) { continue; }
        var a = u[3 * j + 1], b = u[3 * j + 2];
        if (a > pos) { box.appendChild(document.createTextNode(s.slice(pos, a))); }
        var span = el("span", "u" + (ref[j] ? " ref" : ""), s.slice(Math.max(a, pos), b));
        var cl = colour(q[j] / 1000);
        span.style.background = cl[0];
        span.style.color = cl[1];
        span.title = span.textContent + ": " + (q[j] / 1000 * scale).toPrecision(3);
        box.appendChild(span);
        pos = Math.max(pos, b);
      }
      var rest = s.slice(pos);
      if (rest.trim()) {  // no units there: cut off at the model's maximum length
        var lead = rest.length - rest.replace(/^\s+/, "").length;
        if (lead) { box.appendChild(document.createTextNode(rest.slice(0, lead))); }
        var t = el("span", "trunc", rest.slice(lead));
        t.title = "not explained: beyond the model's maximum length";
        box.appendChild(t);
      } else if (rest) { box.appendChild(document.createTextNode(rest)); }
    });
    return box;
  }
  fill(S.d, uniq(D.runs.map(function (r) { return r.d; })).map(function (d) {
    return [d, (D.datasets[d] || {}).name || String(d)];
  }));
  S.d.addEventListener("change", onDataset);
  S.m.addEventListener("change", onModel);
  [S.s, S.y, S.c].forEach(function (x) { x.addEventListener("change", update); });
  S.q.addEventListener("input", update);
  $("ex-prev").addEventListener("click", function () { if (state.pos > 0) { show(state.pos - 1); } });
  $("ex-next").addEventListener("click", function () {
    if (state.pos + 1 < state.visible.length) { show(state.pos + 1); }
  });
  list.addEventListener("keydown", function (ev) {
    if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      var i = state.pos + (ev.key === "ArrowDown" ? 1 : -1);
      if (i >= 0 && i < state.visible.length) {
        show(i);
        list.querySelectorAll(".ex-item")[i].focus();
      }
      ev.preventDefault();
    }
  });
  onDataset();
})();
"""

__all__ = ["CSS", "JS"]
