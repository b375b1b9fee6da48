/* Contrast: class-wise accuracy, prediction matrices, layer-wise CKA and the instance projection of A and B. */
(function () {
  "use strict";
  var E = window.Expunge;
  var CLASS_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                      "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd",
                      "#e6550d", "#31a354", "#756bb1", "#636363"];
  var SPLITS = ["forget", "retain", "test"];
  var prefs = {classwiseSplit: "forget", matrixSplit: "forget", projection: "pca", original: false, ckaSplit: "all"};

  function loading(container) { return container.appendChild(E.el("p", "loading", "Computing…")); }
  var segmented = E.segmented;
  function short(row) { return row ? (row.method || "?") : ""; }

  // ----- class-wise accuracy -------------------------------------------------------------------------------------
  function renderClasswise(container, ctx) {
    var bar = E.el("div", "toolbar");
    container.appendChild(bar);
    var chart = E.el("div", "chart");
    container.appendChild(chart);
    var wait = loading(container);
    var reqs = [E.api(E.expPath(ctx.a.id, "classwise"))];
    if (ctx.b) reqs.push(E.api(E.expPath(ctx.b.id, "classwise")));
    return Promise.all(reqs).then(function (res) {
      wait.remove();
      var a = res[0], b = res[1];
      var splits = SPLITS.filter(function (s) { return a.splits && a.splits[s]; });
      if (!splits.length) { E.empty(container, "No class-wise accuracy for this model."); return; }
      if (splits.indexOf(prefs.classwiseSplit) < 0) prefs.classwiseSplit = splits[0];
      function draw() {
        var s = prefs.classwiseSplit, sa = a.splits[s], sb = b && b.splits ? b.splits[s] : null;
        var series = [["A · " + short(ctx.a), sa.model, E.colors.a]];
        if (sb) series.push(["B · " + short(ctx.b), sb.model, E.colors.b]);
        series.push(["oracle", sa.oracle, E.colors.oracle]);
        if (prefs.original && sa.original) series.push(["original", sa.original, E.colors.original]);
        // classes with no example in this split (every value missing) are left out
        var keep = a.classes.map(function (_, i) {
          return series.some(function (t) { return t[1] && t[1][i] !== null && t[1][i] !== undefined; });
        });
        var classes = a.classes.map(String).filter(function (_, i) { return keep[i]; });
        var top = 0;
        series.forEach(function (t) { (t[1] || []).forEach(function (v) { if (typeof v === "number") top = Math.max(top, v); }); });
        var percent = top > 1.5;        // accuracies in % (expunge's scores) or as fractions
        var traces = series.map(function (t) {
          return {type: "bar", name: t[0], x: classes, y: (t[1] || []).filter(function (_, i) { return keep[i]; }),
                  marker: {color: t[2]}, texttemplate: classes.length <= 12 ? "%{y:.0f}" : "",
                  textposition: "outside", textfont: {size: 10, color: "#4b5563"}, cliponaxis: false,
                  hovertemplate: "class %{x}: %{y:.1f}" + (percent ? "%" : "") + "<extra>" + E.esc(t[0]) + "</extra>"};
        });
        return E.plot(chart, traces, {height: 320, barmode: "group", bargap: 0.25,
                                      xaxis: {title: {text: "class"}, type: "category"},
                                      yaxis: {title: {text: "accuracy on " + s + (percent ? " (%)" : "")},
                                              range: [0, percent ? 105 : 1.05], gridcolor: "#eef0f3"}});
      }
      bar.appendChild(segmented("split", splits, prefs.classwiseSplit, function (v) {
        prefs.classwiseSplit = v; draw();
      }));
      var lab = E.el("label", "check", '<input type="checkbox"' + (prefs.original ? " checked" : "") +
                     "> show the original");
      lab.querySelector("input").addEventListener("change", function (ev) { prefs.original = ev.target.checked; draw(); });
      bar.appendChild(lab);
      if (!ctx.b) bar.appendChild(E.el("span", "hint", ctx.bRow ? "B has no class-wise view" : "Pick B to compare"));
      return draw();
    });
  }

  // ----- prediction matrices -------------------------------------------------------------------------------------
  function heat(div, title, classes, counts, colorscale, rows) {
    var labels = classes.map(String);
    var ylabels = labels.filter(function (_, i) { return rows[i]; });
    counts = counts.filter(function (_, i) { return rows[i]; });
    var pct = counts.map(function (row) {
      var n = row.reduce(function (s, v) { return s + v; }, 0);
      return row.map(function (v) { return n ? v / n : 0; });
    });
    var text = counts.map(function (row, i) {
      return row.map(function (v, j) { return v ? (pct[i][j] * 100).toFixed(0) : ""; });
    });
    var small = labels.length <= 12;
    return E.plot(div, [{type: "heatmap", x: labels, y: ylabels, z: pct, zmin: 0, zmax: 1, colorscale: colorscale,
                         showscale: false, text: text, texttemplate: small ? "%{text}" : "",
                         textfont: {size: 10}, customdata: counts,
                         hovertemplate: "true %{y} → predicted %{x}<br>%{customdata} examples (%{z:.1%})" +
                                        "<extra></extra>", xgap: 1, ygap: 1}],
                  {height: Math.max(150, Math.min(320, 90 + ylabels.length * 24)),
                   margin: {l: 48, r: 8, t: 30, b: 44}, title: {text: title, font: {size: 13}, x: 0.02},
                   xaxis: {title: {text: "predicted"}, type: "category", side: "bottom"},
                   yaxis: {title: {text: "true"}, type: "category", autorange: "reversed"}});
  }
  function renderMatrix(container, ctx) {
    var bar = E.el("div", "toolbar");
    container.appendChild(bar);
    var grid = E.el("div", "grid3");
    container.appendChild(grid);
    var cells = [E.el("div", "chart"), E.el("div", "chart"), E.el("div", "chart")];
    cells.forEach(function (c) { grid.appendChild(c); });
    function draw(split) {
      var wait = loading(bar);
      var reqs = [E.api(E.expPath(ctx.a.id, "matrix", "split=" + split))];
      if (ctx.b) reqs.push(E.api(E.expPath(ctx.b.id, "matrix", "split=" + split)));
      return Promise.all(reqs).then(function (res) {
        wait.remove();
        var a = res[0], b = res[1];
        var rows = a.classes.map(function (_, i) {
          return [a.model, a.oracle, b ? b.model : null].some(function (m) {
            return m && m[i] && m[i].some(function (v) { return v > 0; });
          });
        });
        var jobs = [heat(cells[0], "A · " + short(ctx.a), a.classes, a.model, [[0, "#f8fafc"], [1, E.colors.a]], rows)];
        if (b) {
          jobs.push(heat(cells[1], "B · " + short(ctx.b), b.classes, b.model, [[0, "#f8fafc"], [1, E.colors.b]], rows));
        } else {
          cells[1].innerHTML = "";
          E.empty(cells[1], ctx.bRow ? "B has no prediction matrix." : "Pick B to compare.");
        }
        jobs.push(heat(cells[2], "oracle", a.classes, a.oracle, [[0, "#f8fafc"], [1, E.colors.oracle]], rows));
        return Promise.all(jobs);
      }, function (err) { wait.remove(); throw err; });
    }
    bar.appendChild(segmented("split", SPLITS, prefs.matrixSplit, function (v) {
      prefs.matrixSplit = v;
      draw(v).catch(function (err) { E.errorLine(container, err); });
    }));
    bar.appendChild(E.el("span", "hint", "Row-normalised: each cell is the share (%) of a true class predicted as " +
                                         "each class."));
    return draw(prefs.matrixSplit);
  }

  // ----- CKA ------------------------------------------------------------------------------------------------------
  function renderCka(container, ctx) {
    var bar = E.el("div", "toolbar");
    container.appendChild(bar);
    var chart = E.el("div", "chart");
    container.appendChild(chart);
    var wait = loading(container);
    var reqs = [E.api(E.expPath(ctx.a.id, "cka"))];
    if (ctx.b) reqs.push(E.api(E.expPath(ctx.b.id, "cka")));
    return Promise.all(reqs).then(function (res) {
      wait.remove();
      var splits = Object.keys(res[0].splits || {}).filter(function (s) { return SPLITS.indexOf(s) >= 0; });
      if (splits.length) {
        if (prefs.ckaSplit !== "all" && splits.indexOf(prefs.ckaSplit) < 0) prefs.ckaSplit = "all";
        bar.appendChild(segmented("examples", [{value: "all", label: "all examples"}].concat(splits.map(function (s) {
          var n = res[0].n && res[0].n[s];
          return {value: s, label: s + (n ? " (" + n + ")" : "")};
        })), prefs.ckaSplit, function (v) { prefs.ckaSplit = v; draw(); }));
      }
      bar.appendChild(E.el("span", "hint", "Solid: against the original; dashed: against the oracle."));
      container.appendChild(E.el("p", "note", "Linear CKA per layer on a fixed sample: 1 means the layer's " +
        "representation matches the reference's up to rotation and scale."));
      function pick(d) {
        return prefs.ckaSplit !== "all" && d.splits && d.splits[prefs.ckaSplit] ? d.splits[prefs.ckaSplit] : d;
      }
      function draw() {
        var traces = [];
        [["A", ctx.a, res[0], E.colors.a], ["B", ctx.b, res[1], E.colors.b]].forEach(function (m) {
          if (!m[2]) return;
          var d = {layers: m[2].layers, vs_original: pick(m[2]).vs_original, vs_oracle: pick(m[2]).vs_oracle};
          traces.push({type: "scatter", mode: "lines+markers", name: m[0] + " vs original", x: d.layers,
                       y: d.vs_original, line: {color: m[3], width: 2}, marker: {size: 7}});
          traces.push({type: "scatter", mode: "lines+markers", name: m[0] + " vs oracle", x: d.layers, y: d.vs_oracle,
                       line: {color: m[3], width: 2, dash: "dash"}, marker: {size: 7, symbol: "diamond"}});
        });
        traces.forEach(function (t) { t.hovertemplate = "%{x}: %{y:.3f}<extra>" + t.name + "</extra>"; });
        return E.plot(chart, traces, {height: 300, xaxis: {title: {text: "layer"}, type: "category"},
                                      yaxis: {title: {text: "linear CKA"}, range: [0, 1.05], gridcolor: "#eef0f3"}});
      }
      return draw();
    });
  }

  // ----- projection ---------------------------------------------------------------------------------------------
  var noThumbs = {};
  function tipHtml(id, p, d, i, other) {
    var url = noThumbs[id] ? null : E.thumbUrl(id, d.index[i]);
    var img = url ? '<img src="' + E.esc(url) + '" alt="" width="96" height="96" ' +
                    'onerror="this.remove();Expunge._noThumb(\'' + E.esc(id) + '\')">' : "";
    var lines = ["example " + d.index[i] + (d.forget[i] ? ' · <b class="forget">forget</b>' : ""),
                 "label " + E.esc(d.label[i])];
    if (d.predicted) lines.push(p + " predicts " + E.esc(d.predicted[i]));
    if (other && other.d.predicted && other.pos[d.index[i]] !== undefined) {
      lines.push(other.name + " predicts " + E.esc(other.d.predicted[other.pos[d.index[i]]]));
    }
    return img + "<div>" + lines.join("<br>") + "</div>";
  }
  E._noThumb = function (id) { noThumbs[id] = true; };

  function projectionTraces(d, name) {
    var keep = [], forget = [];
    d.points.forEach(function (_, i) { (d.forget[i] ? forget : keep).push(i); });
    var classes = [];
    d.label.forEach(function (l) { if (classes.indexOf(String(l)) < 0) classes.push(String(l)); });
    classes.sort(function (x, y) { return x.localeCompare(y, undefined, {numeric: true}); });
    function color(i) { return CLASS_COLORS[classes.indexOf(String(d.label[i])) % CLASS_COLORS.length]; }
    function trace(ids, forgetSet) {
      return {type: "scatter", mode: "markers", name: forgetSet ? "forget" : "other",
              x: ids.map(function (i) { return d.points[i][0]; }), y: ids.map(function (i) { return d.points[i][1]; }),
              customdata: ids, hoverinfo: "none",
              marker: forgetSet ? {size: 8, color: ids.map(color), symbol: "diamond",
                                   line: {width: 1.2, color: "#111827"}}
                                : {size: 5, color: ids.map(color), opacity: 0.55}};
    }
    var traces = [trace(keep, false), trace(forget, true),
                  {type: "scatter", mode: "markers", name: "same example", x: [], y: [], hoverinfo: "skip",
                   marker: {size: 18, color: "rgba(0,0,0,0)", line: {width: 2.5, color: "#111827"}}}];
    return {traces: traces, classes: classes, keep: keep, forget: forget};
  }

  function renderProjection(container, ctx) {
    var bar = E.el("div", "toolbar");
    container.appendChild(bar);
    var grid = E.el("div", ctx.b ? "grid2" : "grid1");
    container.appendChild(grid);
    var legend = E.el("div", "legend");
    container.appendChild(legend);
    var methods = E.exported() ? ["pca"] : ["pca", "tsne", "umap"];
    if (methods.indexOf(prefs.projection) < 0) prefs.projection = "pca";
    function draw() {
      grid.innerHTML = "";
      var panes = [{slot: "a", row: ctx.a, name: "A"}];
      if (ctx.b) panes.push({slot: "b", row: ctx.b, name: "B"});
      panes.forEach(function (p) {
        p.box = E.el("div", "pane");
        p.box.appendChild(E.el("h3", p.slot, p.name + " · " + E.esc(E.label(p.row))));
        p.div = E.el("div", "chart projection");
        p.box.appendChild(p.div);
        grid.appendChild(p.box);
      });
      var wait = loading(bar);
      var q = "method=" + prefs.projection + "&n=2000";
      return Promise.all(panes.map(function (p) { return E.api(E.expPath(p.row.id, "projection", q)); }))
        .then(function (res) {
          wait.remove();
          panes.forEach(function (p, k) {
            p.d = res[k];
            p.pos = {};
            p.d.index.forEach(function (ix, i) { p.pos[ix] = i; });
            p.built = projectionTraces(p.d, p.name);
          });
          var classes = panes[0].built.classes;
          legend.innerHTML = classes.map(function (c, i) {
            return '<span><i style="background:' + CLASS_COLORS[i % CLASS_COLORS.length] + '"></i>' + E.esc(c) +
                   "</span>";
          }).join("") + '<span><i class="diamond"></i>forget example</span><span class="hint">' +
            panes[0].d.points.length + " examples, " + panes[0].built.forget.length + " to forget · " +
            "hover one to find it in the other model</span>";
          return Promise.all(panes.map(function (p) {
            return E.plot(p.div, p.built.traces, {height: 420, showlegend: false, hovermode: "closest",
                                                  margin: {l: 24, r: 8, t: 8, b: 24},
                                                  xaxis: {showticklabels: false, zeroline: false, gridcolor: "#f1f5f9"},
                                                  yaxis: {showticklabels: false, zeroline: false, gridcolor: "#f1f5f9"}});
          })).then(function () { link(panes); });
        }, function (err) { wait.remove(); throw err; });
    }
    function link(panes) {
      panes.forEach(function (p, k) {
        var other = panes[1 - k];
        p.div.on("plotly_hover", function (ev) {
          var pt = ev.points && ev.points[0];
          if (!pt || pt.curveNumber > 1) return;
          var i = pt.customdata;
          var ix = p.d.index[i];
          ring(p, i);
          if (other) {
            var j = other.pos[ix];
            if (j !== undefined) ring(other, j); else ring(other, null);
          }
          var mouse = ev.event || E.mouse;
          E.showTip(tipHtml(p.row.id, p.name, p.d, i, other ? {name: other.name, d: other.d, pos: other.pos} : null),
                    mouse.clientX || E.mouse.x, mouse.clientY || E.mouse.y);
        });
        p.div.on("plotly_unhover", function () {
          E.hideTip();
          panes.forEach(function (q) { ring(q, null); });
        });
      });
    }
    function ring(p, i) {
      var x = i === null ? [] : [p.d.points[i][0]], y = i === null ? [] : [p.d.points[i][1]];
      window.Plotly.restyle(p.div, {x: [x], y: [y]}, [2]);
    }
    bar.appendChild(segmented("projection", methods.map(function (m) {
      return {value: m, label: {pca: "PCA", tsne: "t-SNE", umap: "UMAP"}[m]};
    }), prefs.projection, function (v) {
      prefs.projection = v;
      draw().catch(function (err) { grid.innerHTML = ""; E.errorLine(grid, err); });
    }));
    bar.appendChild(E.el("span", "hint", "Features at the layer before the head, same examples for A and B" +
                                         (ctx.b ? "" : " · pick B to see it side by side")));
    return draw();
  }

  E.registerView({name: "classwise", title: "Class-wise accuracy", tab: "Contrast", order: 10,
                  tasks: ["classification"], render: renderClasswise});
  E.registerView({name: "matrix", title: "Prediction matrices", tab: "Contrast", order: 11,
                  tasks: ["classification"], render: renderMatrix});
  E.registerView({name: "cka", title: "Layer-wise CKA", tab: "Contrast", order: 12,
                  tasks: ["classification", "regression"], render: renderCka});
  E.registerView({name: "projection", title: "Instances: 2-D projection of features", tab: "Contrast", order: 13,
                  tasks: ["classification", "regression"], render: renderProjection});
})();
