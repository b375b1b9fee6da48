/* Screen: the experiment table (sortable, filterable, A/B pickers) and the Pareto view (Avg. Gap against seconds). */
(function () {
  "use strict";
  var E = window.Expunge;

  var DEFAULT_COLUMNS = [
    {key: "method", label: "method"}, {key: "args", label: "arguments"}, {key: "scenario", label: "scenario"},
    {key: "seed", label: "seed"}, {key: "ua", label: "UA"}, {key: "ra", label: "RA"}, {key: "ta", label: "TA"},
    {key: "mia", label: "MIA"}, {key: "avg_gap", label: "Avg. Gap"}, {key: "noise_floor", label: "noise floor"},
    {key: "seconds", label: "seconds"}, {key: "tier", label: "tier"}, {key: "status", label: "status"}];
  var TEXT_KEYS = {method: 1, args: 1, scenario: 1, status: 1, source: 1, task: 1, kind: 1, id: 1};
  var PALETTE = ["#2563eb", "#ea580c", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#ca8a04", "#db2777",
                 "#4b5563", "#65a30d", "#7c3aed", "#0d9488"];

  var table = {sort: null, dir: 1, filter: ""};
  var FIRST_ROWS = 60;

  function value(row, key) {
    if (key === "args") return E.argsText(row.args);
    if (Object.prototype.hasOwnProperty.call(row, key) && typeof row[key] !== "object") return row[key];
    if (row.scores && Object.prototype.hasOwnProperty.call(row.scores, key)) return row.scores[key];
    return null;
  }
  function columns() {
    var cols = E.state.columns && E.state.columns.length ? E.state.columns : DEFAULT_COLUMNS;
    return cols.filter(function (c) { return c.key !== "id"; });
  }
  /* The columns worth showing for these rows: the text columns always, a score only where one of the rows has it
     (a language bench's columns stay out of a table filtered to classifiers, UA and RA out of one filtered to
     language models), so the table does not scroll sideways for columns that are all dashes. */
  function shownColumns(rows) {
    var cols = columns();
    if (!rows.length) return cols;
    return cols.filter(function (c) {
      if (TEXT_KEYS[c.key] || c.key === "args" || c.key === "seed") return true;
      return rows.some(function (r) { var v = value(r, c.key); return v !== null && v !== undefined; });
    });
  }
  function searchable(row) {
    if (row._search === undefined) {
      row._search = [row.method, E.argsText(row.args), row.scenario, row.status, row.source, row.task, row.kind,
                     row.error, row.seed === null || row.seed === undefined ? "" : "seed " + row.seed]
        .join(" ").toLowerCase();
    }
    return row._search;
  }
  function visibleRows() {
    var words = table.filter.toLowerCase().split(/\s+/).filter(Boolean);
    var rows = E.state.rows.filter(function (r) {
      var text = searchable(r);
      return words.every(function (w) { return text.indexOf(w) >= 0; });
    });
    if (table.sort) {
      var key = table.sort, dir = table.dir;
      rows = rows.map(function (r, i) { return {r: r, v: value(r, key), i: i}; });
      rows.sort(function (x, y) {
        var xv = x.v, yv = y.v;
        var xn = xv === null || xv === undefined || xv === "", yn = yv === null || yv === undefined || yv === "";
        if (xn || yn) return xn === yn ? x.i - y.i : (xn ? 1 : -1);   // missing values last either way
        if (typeof xv === "number" && typeof yv === "number") return (xv - yv) * dir || x.i - y.i;
        return String(xv).localeCompare(String(yv), undefined, {numeric: true}) * dir || x.i - y.i;
      });
      rows = rows.map(function (o) { return o.r; });
    }
    return rows;
  }

  function cell(row, col) {
    var v = value(row, col.key);
    if (col.key === "status") {
      var st = E.esc(v || "");
      var cls = v === "FINISHED" ? "ok" : (v === "FAILED" || v === "KILLED" || v === "DIVERGED" ? "bad" : "");
      var err = row.error ? '<div class="row-error" title="' + E.esc(row.error) + '">' +
                            E.esc(String(row.error).split("\n")[0]) + "</div>" : "";
      return '<td class="status ' + cls + '">' + st + err + "</td>";
    }
    if (col.key === "args") return '<td class="args" title="' + E.esc(v) + '">' + E.esc(v) + "</td>";
    if (typeof v === "number") return '<td class="num">' + E.fmt(v) + "</td>";
    if (v === null || v === undefined) return '<td class="num none">–</td>';
    return "<td>" + E.esc(v) + "</td>";
  }

  function bodyHtml(rows, cols) {
    var a = E.state.a, b = E.state.b, out = [];
    for (var i = 0; i < rows.length; i++) {
      var r = rows[i], id = E.esc(r.id);
      var cls = (r.id === a ? " picked-a" : "") + (r.id === b ? " picked-b" : "") +
                (r.status && r.status !== "FINISHED" ? " not-finished" : "") + (r.has_model ? "" : " no-model");
      var html = '<tr data-id="' + id + '" class="' + cls + '">' +
        '<td class="pick"><input type="radio" name="pick-a" value="' + id + '" aria-label="model A"' +
        (r.id === a ? " checked" : "") + "></td>" +
        '<td class="pick"><input type="radio" name="pick-b" value="' + id + '" aria-label="model B"' +
        (r.id === b ? " checked" : "") + "></td>";
      for (var c = 0; c < cols.length; c++) html += cell(r, cols[c]);
      out.push(html + "</tr>");
    }
    return out.join("");
  }

  function renderTable(container, ctx) {
    var cols = shownColumns(E.state.rows);
    var rows = E.state.rows;
    if (!rows.length) {
      E.empty(container, "No experiments found under the given paths. Run <code>expunge bench " +
              "examples/bench_small.yaml</code> (about a minute), then open <code>expunge ui bench-small</code>; " +
              "run stores (<code>*.db</code>) and <code>expunge audit</code> outputs can be given too.");
      markPainted();
      return;
    }
    var bar = E.el("div", "toolbar");
    bar.innerHTML = '<input type="search" class="filter" placeholder="Filter: method, argument, scenario, status…" ' +
      'aria-label="filter rows" value="' + E.esc(table.filter) + '">' +
      '<span class="count"></span><span class="hint">Click a header to sort · A and B pick the models to contrast · ' +
      "columns empty for the rows shown are hidden" +
      "</span>";
    container.appendChild(bar);
    var wrap = E.el("div", "table-wrap");
    function headRow() {
      return '<tr><th class="pick" title="model A">A</th><th class="pick" title="model B">B</th>' +
        cols.map(function (c) {
          var sorted = table.sort === c.key ? (table.dir > 0 ? " ▲" : " ▼") : "";
          return '<th data-key="' + E.esc(c.key) + '" class="' + (TEXT_KEYS[c.key] ? "" : "num") +
                 '" aria-sort="' + (sorted ? (table.dir > 0 ? "ascending" : "descending") : "none") + '">' +
                 E.esc(c.label) + sorted + "</th>";
        }).join("") + "</tr>";
    }
    wrap.innerHTML = '<table class="experiments"><thead>' + headRow() + "</thead><tbody></tbody></table>";
    container.appendChild(wrap);
    var thead = wrap.querySelector("thead");
    var tbody = wrap.querySelector("tbody");
    var count = bar.querySelector(".count");

    var rest = null, fills = 0;
    function fill(first) {
      var shown = visibleRows(), serial = ++fills;
      if (rest) { clearTimeout(rest); rest = null; }
      var wanted = shownColumns(shown);          // the filter decides which score columns have values
      if (wanted.map(function (c) { return c.key; }).join() !== cols.map(function (c) { return c.key; }).join()) {
        cols = wanted;
        thead.innerHTML = headRow();
      }
      // a long table paints its first screenful at once and the rest right after (layout of a thousand rows
      // would hold back the first paint)
      var head = first && shown.length > FIRST_ROWS ? shown.slice(0, FIRST_ROWS) : shown;
      tbody.innerHTML = shown.length ? bodyHtml(head, cols) :
        '<tr><td class="none" colspan="' + (cols.length + 2) + '">No row matches the filter.</td></tr>';
      if (head.length < shown.length) {
        painted.then(function () {
          if (serial !== fills) return;
          rest = setTimeout(function () {
            rest = null;
            tbody.insertAdjacentHTML("beforeend", bodyHtml(shown.slice(head.length), cols));
          }, 0);
        });
      }
      count.textContent = shown.length === rows.length ? rows.length + " rows" :
        shown.length + " of " + rows.length + " rows";
    }
    var painted = markPainted();
    fill(true);

    bar.querySelector(".filter").addEventListener("input", function (ev) {
      table.filter = ev.target.value;
      fill();
      document.dispatchEvent(new CustomEvent("expunge:filtered"));   // the Pareto view plots the rows shown
    });
    wrap.querySelector("thead").addEventListener("click", function (ev) {
      var th = ev.target.closest("th[data-key]");
      if (!th) return;
      var key = th.getAttribute("data-key");
      if (table.sort === key) table.dir = -table.dir; else { table.sort = key; table.dir = 1; }
      wrap.querySelectorAll("th[data-key]").forEach(function (h) {
        var k = h.getAttribute("data-key");
        var label = cols.filter(function (c) { return c.key === k; })[0].label;
        h.textContent = label + (k === table.sort ? (table.dir > 0 ? " ▲" : " ▼") : "");
        h.setAttribute("aria-sort", k === table.sort ? (table.dir > 0 ? "ascending" : "descending") : "none");
      });
      fill();
    });
    tbody.addEventListener("change", function (ev) {
      var input = ev.target;
      if (input.name === "pick-a") E.pick("a", input.value);
      if (input.name === "pick-b") E.pick("b", input.value);
    });
    function onPicked() {
      if (!ctx.alive()) { document.removeEventListener("expunge:picked", onPicked); return; }
      tbody.querySelectorAll("tr").forEach(function (tr) {
        var id = tr.getAttribute("data-id");
        tr.classList.toggle("picked-a", id === E.state.a);
        tr.classList.toggle("picked-b", id === E.state.b);
        var ra = tr.querySelector('input[name="pick-a"]'), rb = tr.querySelector('input[name="pick-b"]');
        if (ra) ra.checked = id === E.state.a;
        if (rb) rb.checked = id === E.state.b;
      });
    }
    document.addEventListener("expunge:picked", onPicked);
  }

  /* Records when the table was first painted (the frame after it was inserted); charts load after that. */
  function markPainted() {
    var painted = new Promise(function (resolve) {
      requestAnimationFrame(function () {
        setTimeout(function () {
          if (E.timing.firstTablePaint === null) E.timing.firstTablePaint = performance.now();
          resolve();
        }, 0);
      });
    });
    if (E.timing.firstTablePaint === null) E.holdCharts(painted);
    return painted;
  }

  // ----- Pareto ------------------------------------------------------------------------------------------------
  function frontier(points) {
    var sorted = points.slice().sort(function (p, q) { return p.x - q.x || p.y - q.y; });
    var best = Infinity, out = [];
    sorted.forEach(function (p) { if (p.y < best) { best = p.y; out.push(p); } });
    return out;
  }

  var measure = null;
  function textWidth(text) {
    measure = measure || document.createElement("canvas").getContext("2d");
    measure.font = "11px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
    return measure.measureText(text).width;
  }

  /* Greedy placement of text labels in the drawn chart's pixels (its real axes): each label takes the first offset
     whose box (with a margin) hits no placed box and no marker; a label that fits nowhere is left to the hover. */
  function placeLabels(div, points) {
    var fl = div._fullLayout, xa = fl.xaxis, ya = fl.yaxis;
    function px(p) { return {x: xa._offset + xa.l2p(Math.log10(p.x)), y: ya._offset + ya.l2p(p.y)}; }
    var left = xa._offset, right = xa._offset + xa._length, top = ya._offset - 24, bottom = ya._offset + ya._length;
    var boxes = points.map(function (p) { var c = px(p); return {x0: c.x - 6, x1: c.x + 6, y0: c.y - 6, y1: c.y + 6}; });
    var offsets = [[0, -18], [0, 18], [34, -14], [-34, -14], [34, 14], [-34, 14], [0, -34], [0, 34],
                   [54, -28], [-54, -28], [54, 28], [-54, 28], [0, -50], [0, 50]];
    var pad = 3, out = [];
    points.filter(function (p) { return p.label; }).forEach(function (p) {
      var c = px(p), tw = textWidth(p.label) + 8, th = 16;
      for (var i = 0; i < offsets.length; i++) {
        var cx = c.x + offsets[i][0], cy = c.y + offsets[i][1];
        var box = {x0: cx - tw / 2 - pad, x1: cx + tw / 2 + pad, y0: cy - th / 2 - pad, y1: cy + th / 2 + pad};
        if (box.x0 < left || box.x1 > right || box.y0 < top || box.y1 > bottom) continue;
        var hit = boxes.some(function (b) { return box.x0 < b.x1 && b.x0 < box.x1 && box.y0 < b.y1 && b.y0 < box.y1; });
        if (!hit) {
          boxes.push(box);
          out.push({x: Math.log10(p.x), y: p.y, text: E.esc(p.label), ax: offsets[i][0], ay: offsets[i][1],
                    showarrow: true, arrowwidth: 0.8, arrowcolor: "#9ca3af", arrowhead: 0, standoff: 4,
                    font: {size: 11, color: p.color || "#374151"}, bgcolor: "rgba(255,255,255,0.85)"});
          return;
        }
      }
    });
    return out;
  }

  function renderPareto(container, ctx) {
    // Avg. Gaps of different tasks measure different scores: one task at a time (A's, else the most common)
    var rows = table.filter ? visibleRows() : E.state.rows;     // the rows the table shows under its filter
    var counts = {};
    rows.forEach(function (r) { counts[r.task] = (counts[r.task] || 0) + 1; });
    var tasks = Object.keys(counts);
    var picked = E.row(E.state.a);
    var task = picked ? picked.task : tasks.sort(function (x, y) { return counts[y] - counts[x]; })[0];
    var points = [];
    rows.forEach(function (r) {
      if (r.task !== task) return;
      var s = r.scores || {};
      if (typeof s.avg_gap === "number" && typeof s.seconds === "number" && s.seconds > 0 && isFinite(s.avg_gap)) {
        points.push({x: s.seconds, y: s.avg_gap, row: r});
      }
    });
    if (!points.length) {
      if (!E.state.rows.length) { container.closest(".card").hidden = true; return; }
      E.empty(container, table.filter ? "No row matching the filter has both an Avg. Gap and a run time." :
        "No row has both an Avg. Gap and a run time yet, so there is nothing to plot.");
      document.addEventListener("expunge:filtered", function again() {
        document.removeEventListener("expunge:filtered", again);
        if (!ctx.alive()) return;
        container.innerHTML = "";
        renderPareto(container, ctx);
      });
      return;
    }
    container.appendChild(E.el("p", "note", "Lower is better on both axes: the dashed line joins the runs no " +
      "other run beats on both Avg. Gap and time. Click a point to pick it as A (shift-click: B)." +
      (table.filter ? " Only the rows matching the table's filter." : "") +
      (tasks.length > 1 ? " Showing " + E.esc(task) + " runs" + (picked ? " (A's task)." : ".") : "")));
    var div = E.el("div", "chart pareto");
    container.appendChild(div);
    var methods = [];
    points.forEach(function (p) { if (methods.indexOf(p.row.method) < 0) methods.push(p.row.method); });
    var color = {};
    methods.forEach(function (m, i) { color[m] = PALETTE[i % PALETTE.length]; });
    var front = frontier(points);
    var traces = methods.map(function (m) {
      var ps = points.filter(function (p) { return p.row.method === m; });
      return {type: "scatter", mode: "markers", name: m,
              x: ps.map(function (p) { return p.x; }), y: ps.map(function (p) { return p.y; }),
              customdata: ps.map(function (p) { return p.row.id; }),
              text: ps.map(function (p) {
                return E.esc(p.row.method) + " " + E.esc(E.argsText(p.row.args)) + "<br>" +
                       E.esc(p.row.scenario || "") + (p.row.seed !== null && p.row.seed !== undefined ?
                       " · seed " + p.row.seed : "");
              }),
              hovertemplate: "%{text}<br>Avg. Gap %{y:.3g} · %{x:.3g} s<extra></extra>",
              marker: {color: color[m], size: 9, opacity: 0.85, line: {width: 0.5, color: "#fff"}}};
    });
    traces.push({type: "scatter", mode: "lines", name: "frontier", hoverinfo: "skip",
                 x: front.map(function (p) { return p.x; }), y: front.map(function (p) { return p.y; }),
                 line: {color: "#9ca3af", dash: "dash", width: 1.5, shape: "hv"}});
    ["a", "b"].forEach(function (slot) {
      var p = points.filter(function (q) { return q.row.id === E.state[slot]; })[0];
      if (p) {
        traces.push({type: "scatter", mode: "markers", name: slot.toUpperCase(), hoverinfo: "skip",
                     x: [p.x], y: [p.y],
                     marker: {size: 18, color: "rgba(0,0,0,0)", line: {width: 2.5, color: E.colors[slot]}}});
      }
    });
    var xs = points.map(function (p) { return Math.log10(p.x); });
    var ys = points.map(function (p) { return p.y; });
    var xlo = Math.min.apply(null, xs), xhi = Math.max.apply(null, xs);
    var ylo = Math.min.apply(null, ys), yhi = Math.max.apply(null, ys);
    var xpad = Math.max((xhi - xlo) * 0.08, 0.15), ypad = Math.max((yhi - ylo) * 0.12, Math.abs(yhi) * 0.05, 0.01);
    var xr = [xlo - xpad, xhi + xpad], yr = [ylo - ypad, yhi + ypad];
    var labelled = points.length <= 16 ? points : front.concat(points.filter(function (p) {
      return (p.row.id === E.state.a || p.row.id === E.state.b) && front.indexOf(p) < 0;
    }));
    // tick labels that read as seconds (0.2, 0.5, 1, 2, ...), not Plotly's bare minor digits
    var ticks = [], steps = xr[1] - xr[0] > 3 ? [1] : [1, 2, 5];
    for (var e = Math.floor(xr[0]); e <= Math.ceil(xr[1]); e++) {
      steps.forEach(function (m) {
        var v = m * Math.pow(10, e);
        if (Math.log10(v) >= xr[0] && Math.log10(v) <= xr[1]) ticks.push([v, String(Number(v.toPrecision(1)))]);
      });
    }
    if (!ticks.length) {              // a narrow range (one run, or runs of nearly equal time): label its ends
      [Math.pow(10, xlo), Math.pow(10, xhi)].forEach(function (v) {
        if (!ticks.length || ticks[0][0] !== v) ticks.push([v, String(Number(v.toPrecision(2)))]);
      });
    }
    var height = 400;
    var layout = {height: height, showlegend: true,
                  xaxis: {type: "log", title: {text: "seconds (log scale)"}, range: xr, gridcolor: "#eef0f3",
                          tickvals: ticks.map(function (t) { return t[0]; }),
                          ticktext: ticks.map(function (t) { return t[1]; })},
                  yaxis: {title: {text: "Avg. Gap (lower is closer to the oracle)"}, range: yr, gridcolor: "#eef0f3",
                          zeroline: false},
                  legend: {orientation: "h", y: 1.14, x: 0, font: {size: 11}}};
    function label() {
      if (!ctx.alive() || !div._fullLayout) return;
      window.Plotly.relayout(div, {annotations: placeLabels(div, points.map(function (p) {
        return {x: p.x, y: p.y, color: color[p.row.method], label: labelled.indexOf(p) >= 0 ? p.row.method : null};
      }))});
    }
    // listen at once: a filter typed or a pick made while Plotly still draws redraws the chart for it
    var stale = false;
    function onPicked() {
      document.removeEventListener("expunge:picked", onPicked);
      document.removeEventListener("expunge:filtered", onPicked);
      stale = true;
      if (!ctx.alive()) return;
      div.innerHTML = "";
      container.innerHTML = "";
      renderPareto(container, ctx);
    }
    document.addEventListener("expunge:picked", onPicked);
    document.addEventListener("expunge:filtered", onPicked);
    return E.plot(div, traces, layout).then(function () {
      if (stale) return;
      label();
      div.on("plotly_afterplot", function () {       // a new width (window resize): place the labels again
        if (div._labelledWidth !== div._fullLayout.width) { div._labelledWidth = div._fullLayout.width; label(); }
      });
      div._labelledWidth = div._fullLayout.width;
      div.on("plotly_click", function (ev) {
        var pt = ev.points && ev.points[0];
        if (!pt || !pt.customdata) return;
        E.pick(ev.event && ev.event.shiftKey ? "b" : "a", pt.customdata);
      });
    });
  }

  E.registerView({name: "table", title: "Experiments", tab: "Screen", global: true, order: 1, render: renderTable});
  E.registerView({name: "pareto", title: "Avg. Gap against run time", tab: "Screen", global: true, order: 2,
                  render: renderPareto});
})();
