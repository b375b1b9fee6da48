/* Attack: a threshold attack on the forget set telling the unlearned model from the oracle by the entropy or the
   confidence of its outputs. Mirrored histograms (oracle up, model down), a threshold dragged on the chart or the
   slider, FPR / FNR / ε / attack score at that threshold and over all thresholds, the examples the attack gets right
   and wrong, and the audit's per-example evidence where an audit exists. Everything per threshold is computed here
   from the raw values, so dragging is instant. */
(function () {
  "use strict";
  var E = window.Expunge;
  var BINS = 30, STEPS = 200, SHOWN = 12;
  var prefs = {metric: "entropy", model: "a"};

  /* The attack at threshold t. `low` = the unlearned model's values lie below the oracle's (it is more certain), so
     a value on the model's side of t is called "unlearned". FPR: oracle outputs called unlearned; FNR: the
     unlearned model's outputs called oracle. ε = max(log((1-FNR)/FPR), log((1-FPR)/FNR)) at δ = 0, at least 0, as
     expunge.metrics.forgetting.epsilon_table gives it: ∞ when both rates are 0 (perfect separation), null ("–": a
     threshold that table drops) when exactly one is 0. */
  function stats(model, oracle, t, low) {
    var fp = 0, fn = 0, i;
    for (i = 0; i < oracle.length; i++) if (low ? oracle[i] <= t : oracle[i] >= t) fp++;
    for (i = 0; i < model.length; i++) if (!(low ? model[i] <= t : model[i] >= t)) fn++;
    var fpr = oracle.length ? fp / oracle.length : 0, fnr = model.length ? fn / model.length : 0;
    var eps;
    if (fp === 0 && fn === 0) eps = Infinity;
    else if (fp === 0 || fn === 0) eps = null;
    else eps = Math.max(Math.log(1 - fnr) - Math.log(fpr), Math.log(1 - fpr) - Math.log(fnr), 0);
    return {fpr: fpr, fnr: fnr, eps: eps, score: 1 - fpr - fnr};
  }
  E.attackStats = stats;   // used by the browser tests to check the numbers on the page

  function median(v) {
    var s = v.slice().sort(function (x, y) { return x - y; });
    return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : 0;
  }
  function finite(v) { return (v || []).filter(function (x) { return typeof x === "number" && isFinite(x); }); }

  function render(container, ctx) {
    var wait = container.appendChild(E.el("p", "loading", "Computing…"));
    var target = prefs.model === "b" && ctx.b ? ctx.b : ctx.a;
    var bar = E.el("div", "toolbar");
    container.appendChild(bar);
    return E.api(E.expPath(target.id, "attack")).then(function (data) {
      wait.remove();
      if (ctx.b) {
        bar.appendChild(E.segmented("model", [{value: "a", label: "A · " + ctx.a.method},
                                              {value: "b", label: "B · " + ctx.b.method}], prefs.model, function (v) {
          prefs.model = v;
          container.innerHTML = "";
          render(container, ctx).catch(function (err) { E.errorLine(container, err); });
        }));
      }
      if (data.forget && data.forget.oracle) {        // without the oracle there is no attack to score
        bar.appendChild(E.segmented("score", [{value: "entropy", label: "entropy"},
                                              {value: "confidence", label: "confidence"}], prefs.metric, function (v) {
          prefs.metric = v;
          build();
        }));
      }
      var body = E.el("div", "attack-body");
      container.appendChild(body);
      var audit = E.el("div", "audit");
      container.appendChild(audit);
      function build() { body.innerHTML = ""; draw(body, data, target, ctx); }
      build();
      renderAudit(audit, data.audit, target);
    });
  }

  function draw(body, data, target, ctx) {
    var metric = prefs.metric;
    var forget = data.forget || {};
    if (!forget.oracle) {
      E.empty(body, "The oracle model is missing for " + E.esc(E.label(target)) + ": the attack compares its outputs " +
              "with the oracle's (the model retrained without the forget set), and none was kept or can be rebuilt.");
      return;
    }
    if (!forget.model) {
      E.empty(body, "No outputs of " + E.esc(E.label(target)) + " on the forget set.");
      return;
    }
    var model = finite(forget.model[metric]), oracle = finite(forget.oracle[metric]);
    if (!model.length || !oracle.length) {
      E.empty(body, "No " + metric + " values for the forget set of this model.");
      return;
    }
    var low = median(model) <= median(oracle);
    var lo = Math.min(Math.min.apply(null, model), Math.min.apply(null, oracle));
    var hi = Math.max(Math.max.apply(null, model), Math.max.apply(null, oracle));
    if (hi <= lo) hi = lo + 1e-6;
    var width = (hi - lo) / BINS;
    var centers = [], cm = [], co = [], b;
    for (b = 0; b < BINS; b++) { centers.push(lo + (b + 0.5) * width); cm.push(0); co.push(0); }
    function bin(v) { return Math.min(BINS - 1, Math.max(0, Math.floor((v - lo) / width))); }
    model.forEach(function (v) { cm[bin(v)]--; });
    oracle.forEach(function (v) { co[bin(v)]++; });
    var t = lo, best = -Infinity;     // start at the strongest threshold (the highest attack score)
    for (var g = 0; g <= STEPS; g++) {
      var tg = lo + (hi - lo) * g / STEPS, sg = stats(model, oracle, tg, low).score;
      if (sg > best + 1e-12) { best = sg; t = tg; }
    }

    var top = E.el("div", "attack-top");
    body.appendChild(top);
    var hist = E.el("div", "chart hist");
    var side = E.el("div", "attack-side");
    top.appendChild(hist);
    top.appendChild(side);
    var rule = E.el("p", "rule");
    side.appendChild(rule);
    var slider = E.el("div", "slider");
    slider.innerHTML = '<label>threshold <input type="range" class="threshold" min="' + lo + '" max="' + hi +
                       '" step="' + (hi - lo) / 1000 + '" value="' + t + '" aria-label="threshold"></label>' +
                       '<output class="t-value"></output>';
    side.appendChild(slider);
    var numbers = E.el("dl", "numbers");
    side.appendChild(numbers);
    var curves = E.el("div", "chart curves");
    body.appendChild(curves);
    var examples = E.el("div", "examples");
    body.appendChild(examples);

    var name = (prefs.model === "b" && ctx.b ? "B" : "A");
    var marg = {l: 56, r: 16, t: 28, b: 44};
    var maxCount = Math.max(Math.max.apply(null, co), -Math.min.apply(null, cm), 1);
    var line = function (x) {
      return {type: "line", x0: x, x1: x, yref: "paper", y0: 0, y1: 1, line: {color: "#111827", width: 2}};
    };
    var histReady = E.plot(hist, [
      {type: "bar", name: "oracle", x: centers, y: co, width: width * 0.95, marker: {color: E.colors.oracle},
       hovertemplate: "%{x:.3f}: %{y} oracle outputs<extra></extra>"},
      {type: "bar", name: name + " · " + target.method, x: centers, y: cm, width: width * 0.95,
       marker: {color: name === "B" ? E.colors.b : E.colors.a}, customdata: cm.map(function (v) { return -v; }),
       hovertemplate: "%{x:.3f}: %{customdata} outputs of " + name + "<extra></extra>"}],
      {height: 330, barmode: "relative", bargap: 0, dragmode: false, margin: marg, shapes: [line(t)],
       xaxis: {title: {text: metric + " on the forget set"}, range: [lo, hi], fixedrange: true},
       yaxis: {title: {text: "examples (oracle ↑ · " + name + " ↓)"}, range: [-maxCount * 1.1, maxCount * 1.1],
               fixedrange: true, gridcolor: "#eef0f3",
               tickvals: ticks(maxCount), ticktext: ticks(maxCount).map(function (v) { return String(Math.abs(v)); })}},
      {displayModeBar: false});

    var ts = [], fprs = [], fnrs = [], scores = [], epss = [];
    for (var k = 0; k <= STEPS; k++) {
      var x = lo + (hi - lo) * k / STEPS, s = stats(model, oracle, x, low);
      ts.push(x); fprs.push(s.fpr); fnrs.push(s.fnr); scores.push(s.score);
      epss.push(s.eps === null || !isFinite(s.eps) ? null : s.eps);
    }
    var curvesReady = E.plot(curves, [
      {type: "scatter", mode: "lines", name: "FPR", x: ts, y: fprs, line: {color: "#dc2626", width: 2}},
      {type: "scatter", mode: "lines", name: "FNR", x: ts, y: fnrs, line: {color: "#9333ea", width: 2}},
      {type: "scatter", mode: "lines", name: "attack score (1 − FPR − FNR)", x: ts, y: scores,
       line: {color: "#111827", width: 2}},
      {type: "scatter", mode: "lines", name: "ε", x: ts, y: epss, yaxis: "y2", line: {color: "#0891b2", width: 2,
       dash: "dot"}}],
      {height: 260, dragmode: false, margin: {l: 56, r: 56, t: 28, b: 44}, shapes: [line(t)],
       hovermode: "x unified",
       xaxis: {title: {text: "threshold on " + metric}, range: [lo, hi], fixedrange: true},
       yaxis: {title: {text: "rate / score"}, range: [Math.min(-0.05, Math.min.apply(null, scores) - 0.05), 1.05],
               fixedrange: true, gridcolor: "#eef0f3"},
       yaxis2: {title: {text: "ε"}, overlaying: "y", side: "right", rangemode: "tozero", fixedrange: true, tickmode: "auto",
                showgrid: false}},
      {displayModeBar: false});

    var input = slider.querySelector("input");
    var out = slider.querySelector("output");
    var pending = null;
    function update(x, fromSlider) {
      t = Math.min(hi, Math.max(lo, x));
      if (!fromSlider) input.value = t;
      var s = stats(model, oracle, t, low);
      out.textContent = E.fmt(t, 3);
      out.setAttribute("data-threshold", String(t));
      rule.innerHTML = "The attack calls an output <b>" + name + "’s</b> (still remembered) when its " + metric + " is " +
        (low ? "≤" : "≥") + " <b>" + E.fmt(t, 3) + "</b>, the oracle’s otherwise.";
      numbers.innerHTML =
        "<div><dt>FPR</dt><dd data-stat=\"fpr\">" + s.fpr.toFixed(3) + "</dd></div>" +
        "<div><dt>FNR</dt><dd data-stat=\"fnr\">" + s.fnr.toFixed(3) + "</dd></div>" +
        "<div><dt>ε</dt><dd data-stat=\"eps\">" + (s.eps === null ? "–" : isFinite(s.eps) ? s.eps.toFixed(2) : "∞") +
        "</dd></div>" +
        "<div><dt>attack score</dt><dd data-stat=\"score\">" + s.score.toFixed(3) + "</dd></div>";
      if (pending) return;
      pending = requestAnimationFrame(function () {
        pending = null;
        var Plotly = window.Plotly;
        if (Plotly && hist.layout) Plotly.relayout(hist, {"shapes[0].x0": t, "shapes[0].x1": t});
        if (Plotly && curves.layout) Plotly.relayout(curves, {"shapes[0].x0": t, "shapes[0].x1": t});
        showExamples(examples, data, target, metric, t, low, name);
      });
    }
    input.addEventListener("input", function () { update(parseFloat(input.value), true); });
    update(t, false);

    // drag on the histogram: the plot area maps the mouse x to a threshold
    histReady.then(function () {
      var dragging = false;
      function xAt(ev) {
        var ax = hist._fullLayout.xaxis, rect = hist.getBoundingClientRect();
        return ax.p2l(ev.clientX - rect.left - ax._offset);
      }
      function inPlot(ev) {
        var fl = hist._fullLayout, rect = hist.getBoundingClientRect();
        var x = ev.clientX - rect.left, y = ev.clientY - rect.top;
        return x >= fl.xaxis._offset && x <= fl.xaxis._offset + fl.xaxis._length &&
               y >= fl.yaxis._offset && y <= fl.yaxis._offset + fl.yaxis._length;
      }
      hist.addEventListener("mousedown", function (ev) {
        if (!inPlot(ev)) return;
        dragging = true;
        hist.classList.add("dragging");
        update(xAt(ev), false);
        ev.preventDefault();
      });
      window.addEventListener("mousemove", function (ev) { if (dragging) update(xAt(ev), false); });
      window.addEventListener("mouseup", function () { dragging = false; hist.classList.remove("dragging"); });
    });
    return Promise.all([histReady, curvesReady]);
  }

  function ticks(max) {
    var step = Math.pow(10, Math.floor(Math.log10(max)));
    if (max / step < 2) step /= 5; else if (max / step < 5) step /= 2;
    step = Math.max(1, Math.round(step));
    var out = [];
    for (var v = -Math.floor(max / step) * step; v <= max; v += step) out.push(v);
    return out;
  }

  function thumbs(box, id, items, title) {
    var sec = E.el("div", "strip");
    sec.appendChild(E.el("h4", "", title));
    var row = E.el("div", "thumbs");
    items.forEach(function (it) {
      var url = E.thumbUrl(id, it.index);
      var fig = E.el("figure", "");
      fig.innerHTML = (url ? '<img src="' + E.esc(url) + '" alt="example ' + it.index + '" loading="lazy" ' +
                       'onerror="this.replaceWith(Object.assign(document.createElement(\'span\'),' +
                       '{className:\'noimg\',textContent:\'#\'+' + Number(it.index) + '}))">' :
                       '<span class="noimg">#' + it.index + "</span>") +
                      "<figcaption>#" + it.index + "<br>" + E.esc(it.caption) + "</figcaption>";
      row.appendChild(fig);
    });
    if (!items.length) row.appendChild(E.el("p", "none", "none at this threshold"));
    sec.appendChild(row);
    box.appendChild(sec);
  }

  function showExamples(box, data, target, metric, t, low, name) {
    var values = (data.forget && data.forget.model && data.forget.model[metric]) || [], idx = data.index || [];
    var right = [], wrong = [];
    values.forEach(function (v, i) {
      if (typeof v !== "number" || !isFinite(v)) return;
      var called = low ? v <= t : v >= t;
      (called ? right : wrong).push({index: idx[i] !== undefined ? idx[i] : i, v: v, d: Math.abs(v - t)});
    });
    right.sort(function (p, q) { return q.d - p.d; });
    wrong.sort(function (p, q) { return q.d - p.d; });
    box.innerHTML = "";
    function cap(list) {
      return list.slice(0, SHOWN).map(function (it) { return {index: it.index, caption: metric + " " + E.fmt(it.v, 3)}; });
    }
    thumbs(box, target.id, cap(right), "Attack right: " + name + "’s output gives the example away (" + right.length +
           " of " + (right.length + wrong.length) + ")");
    thumbs(box, target.id, cap(wrong), "Attack wrong: " + name + "’s output looks like the oracle’s (" + wrong.length +
           ")");
  }

  function renderAudit(box, audit, target) {
    box.innerHTML = "";
    if (!audit || !audit.examples || !audit.examples.length) {
      box.appendChild(E.el("p", "note", "No audit for this model: <code>expunge audit</code> adds per-example ε, " +
                                        "KLoM and U-LiRA evidence here."));
      return Promise.resolve();
    }
    box.appendChild(E.el("h3", "", "Audit: per-example evidence"));
    var grid = E.el("div", "audit-grid");
    box.appendChild(grid);
    var chart = E.el("div", "chart audit-scatter");
    grid.appendChild(chart);
    var exposed = E.el("div", "");
    grid.appendChild(exposed);
    var ex = audit.examples;
    var byIndex = {};
    ex.forEach(function (e) { byIndex[e.index] = e; });
    var top = (audit.most_exposed || []).slice(0, SHOWN).map(function (i) {
      var e = byIndex[i] || {};
      return {index: i, caption: "ε " + E.fmt(e.epsilon) + " · KLoM " + E.fmt(e.klom)};
    });
    thumbs(exposed, target.id, top, "Most exposed examples");
    var hasUlira = ex.some(function (e) { return typeof e.ulira === "number"; });
    return E.plot(chart, [{type: "scatter", mode: "markers", x: ex.map(function (e) { return e.epsilon; }),
                           y: ex.map(function (e) { return e.klom; }), customdata: ex.map(function (e) { return e.index; }),
                           text: ex.map(function (e) { return E.fmt(e.ulira); }),
                           hovertemplate: "example %{customdata}<br>ε %{x:.3f} · KLoM %{y:.3f}" +
                                          (hasUlira ? " · U-LiRA %{text}" : "") + "<extra></extra>",
                           marker: {size: 8, opacity: 0.8,
                                    color: hasUlira ? ex.map(function (e) { return e.ulira; }) : E.colors.a,
                                    colorscale: "Viridis", showscale: hasUlira,
                                    colorbar: {title: {text: "U-LiRA"}, thickness: 12}}}],
                  {height: 320, xaxis: {title: {text: "per-example ε"}, gridcolor: "#eef0f3"},
                   yaxis: {title: {text: "KLoM"}, gridcolor: "#eef0f3"}});
  }

  E.registerView({name: "attack", title: "Threshold attack on the forget set", tab: "Attack", order: 20,
                  tasks: ["classification", "regression"], render: render});
})();
