/* expunge comparator: the page's core. Holds the experiment list, the picked models A and B, the tabs and the view
   registry; every view file calls Expunge.registerView({name, tab, tasks, render(container, ctx)}) and is named in
   index.html's list of view files, so a new task's view is one new file (its tab appears when A or B is a row of
   that task whose `views` name it). One data function, Expunge.api(path), reads window.EXPUNGE_EXPORT in a static
   export and fetches otherwise. Plain scripts, no modules: a static export opens from file://. */
(function () {
  "use strict";

  var TOKEN = new URLSearchParams(location.search).get("token");
  var TABS = ["Screen", "Contrast", "Attack"];   // task tabs follow, then Build
  var COLORS = {a: "#2563eb", b: "#ea580c", oracle: "#16a34a", original: "#6b7280"};

  var E = window.Expunge = {
    views: [],
    colors: COLORS,
    state: {rows: [], columns: [], byId: {}, a: null, b: null, tab: "Screen", loaded: false, build: null},
    timing: window.EXPUNGE_TIMING = window.EXPUNGE_TIMING || {firstTablePaint: null},
    exported: function () { return typeof window.EXPUNGE_EXPORT === "object" && window.EXPUNGE_EXPORT !== null; },
  };

  // ---------------------------------------------------------------------------------------------------------------
  // registry
  E.registerView = function (view) {
    if (!view || !view.name || !view.tab || typeof view.render !== "function") {
      throw new TypeError("registerView needs {name, tab, tasks, render}");
    }
    view.tasks = view.tasks || ["*"];
    view.order = view.order === undefined ? 100 : view.order;
    E.views.push(view);
    E.views.sort(function (x, y) { return x.order - y.order; });
    if (E.state.loaded) renderTabs();
  };

  // ---------------------------------------------------------------------------------------------------------------
  // data
  function ApiError(status, message) { this.status = status; this.message = message; }
  ApiError.prototype = Object.create(Error.prototype);
  E.ApiError = ApiError;

  E.withToken = function (url) {
    if (!TOKEN) return url;
    return url + (url.indexOf("?") < 0 ? "?" : "&") + "token=" + encodeURIComponent(TOKEN);
  };

  /* An experiment id in a path: percent-encoded except for characters that are safe in a path segment. */
  E.seg = function (id) {
    return encodeURIComponent(id).replace(/%3A/gi, ":").replace(/%40/gi, "@").replace(/%2B/gi, "+");
  };
  E.expPath = function (id, view, query) {
    return "/api/experiments/" + E.seg(id) + (view ? "/" + view : "") + (query ? "?" + query : "");
  };

  var memo = {};
  E.api = function (path, options) {
    if (E.exported()) {
      var store = window.EXPUNGE_EXPORT;
      var keys = [path];
      try { keys.push(decodeURIComponent(path)); } catch (e) { /* keep the raw key */ }
      for (var i = 0; i < keys.length; i++) {
        if (Object.prototype.hasOwnProperty.call(store, keys[i])) {
          return Promise.resolve(JSON.parse(JSON.stringify(store[keys[i]])));
        }
      }
      return Promise.reject(new ApiError(404, "not included in this export"));
    }
    options = options || {};
    var cacheable = !options.method && !options.fresh;
    if (cacheable && memo[path]) return memo[path];
    var headers = {"Accept": "application/json"};
    if (TOKEN) headers["Authorization"] = "Bearer " + TOKEN;
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    var p = fetch(path, {method: options.method || "GET", headers: headers,
                         body: options.body === undefined ? undefined : JSON.stringify(options.body)})
      .then(function (r) {
        return r.text().then(function (text) {
          var body = null;
          try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
          if (!r.ok) {
            var msg = body && (body.error || body.detail) ? (body.error || body.detail) : r.status + " " + r.statusText;
            if (typeof msg !== "string") msg = JSON.stringify(msg);
            throw new ApiError(r.status, msg.split("\n")[0]);
          }
          return body;
        });
      }, function () { throw new ApiError(0, "the server cannot be reached (is expunge ui still running?)"); });
    if (cacheable) {
      memo[path] = p;
      p.catch(function () { delete memo[path]; });
    }
    return p;
  };
  E.forget = function (prefix) {
    Object.keys(memo).forEach(function (k) { if (!prefix || k.indexOf(prefix) === 0) delete memo[k]; });
  };

  /* URL of an image served by the API (thumbnails); in an export, a data URL stored under the same key, if any. */
  E.imageUrl = function (path) {
    if (E.exported()) {
      var v = window.EXPUNGE_EXPORT[path];
      return typeof v === "string" ? v : null;
    }
    return E.withToken(path);
  };
  E.thumbUrl = function (id, index) { return E.imageUrl(E.expPath(id, "thumb/" + index + ".png")); };

  // ---------------------------------------------------------------------------------------------------------------
  // Plotly, loaded after the first table paint
  var plotlyPromise = null, gate = Promise.resolve();
  /* Charts wait for `promise` (the first table paint) before the chart library is loaded and compiled. */
  E.holdCharts = function (promise) { gate = promise; };
  E.plotly = function () {
    if (window.Plotly) return Promise.resolve(window.Plotly);
    if (!plotlyPromise) {
      plotlyPromise = gate.then(function () { return new Promise(function (resolve, reject) {
        var s = document.createElement("script");
        var base = document.documentElement.getAttribute("data-static") || "static/";
        s.src = base + "plotly.min.js" + (TOKEN ? "?token=" + encodeURIComponent(TOKEN) : "");
        s.onload = function () { resolve(window.Plotly); };
        s.onerror = function () { reject(new ApiError(0, "the chart library (plotly.min.js) could not be loaded")); };
        document.head.appendChild(s);
      }); });
    }
    return plotlyPromise;
  };

  E.baseLayout = function (extra) {
    var layout = {
      font: {family: "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", size: 12, color: "#1f2937"},
      margin: {l: 56, r: 16, t: 28, b: 44},
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "#fff",
      hoverlabel: {font: {size: 12}},
      legend: {orientation: "h", y: 1.12, x: 0, font: {size: 11}},
    };
    return Object.assign(layout, extra || {});
  };
  E.plot = function (el, traces, layout, config) {
    return E.plotly().then(function (Plotly) {
      return Plotly.newPlot(el, traces, E.baseLayout(layout),
                            Object.assign({displaylogo: false, responsive: true,
                                           modeBarButtonsToRemove: ["select2d", "lasso2d", "toImage"]},
                                          config || {}));
    });
  };

  // ---------------------------------------------------------------------------------------------------------------
  // small shared pieces
  E.esc = function (s) {
    return String(s === null || s === undefined ? "" : s).replace(/[&<>"']/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c];
    });
  };
  E.fmt = function (v, digits) {
    if (v === null || v === undefined || v === "") return "";
    if (typeof v === "boolean") return v ? "yes" : "no";
    if (typeof v !== "number") return String(v);
    if (!isFinite(v)) return v > 0 ? "∞" : (v < 0 ? "−∞" : "");
    if (digits !== undefined) return v.toFixed(digits);
    var a = Math.abs(v);
    if (a === 0) return "0";
    if (Number.isInteger(v) && a < 1e6) return String(v);
    if (a >= 100) return v.toFixed(1);
    if (a >= 1) return v.toFixed(2);
    if (a >= 0.001) return v.toFixed(3);
    return v.toExponential(1);
  };
  E.argsText = function (args) {
    if (!args || typeof args !== "object") return args === null || args === undefined ? "" : String(args);
    return Object.keys(args).map(function (k) {
      var v = args[k];
      return k + "=" + (typeof v === "object" && v !== null ? JSON.stringify(v) : v);
    }).join(" ");
  };
  E.label = function (row) {
    if (!row) return "";
    var bits = [row.method || "?"];
    if (row.scenario) bits.push(row.scenario);
    if (row.seed !== null && row.seed !== undefined) bits.push("seed " + row.seed);
    return bits.join(" · ");
  };
  E.el = function (tag, cls, html) {
    var n = document.createElement(tag);
    if (cls) n.className = cls;
    if (html !== undefined) n.innerHTML = html;
    return n;
  };
  E.empty = function (container, message, action) {
    var box = E.el("div", "empty", "<p>" + message + "</p>");
    if (action) {
      var b = E.el("button", "link", E.esc(action.label));
      b.addEventListener("click", action.run);
      box.appendChild(b);
    }
    container.appendChild(box);
    return box;
  };
  /* A row of toggle buttons (one pressed); options are strings or {value, label}; onChange(value) on a click. */
  E.segmented = function (name, options, current, onChange) {
    var box = E.el("div", "segmented");
    box.setAttribute("role", "group");
    box.setAttribute("aria-label", name);
    options.forEach(function (o) {
      var v = typeof o === "object" ? o.value : o;
      var b = E.el("button", "", E.esc(typeof o === "object" ? o.label : o));
      b.type = "button";
      b.setAttribute("data-value", v);
      b.setAttribute("aria-pressed", String(v === current));
      b.addEventListener("click", function () {
        box.querySelectorAll("button").forEach(function (x) { x.setAttribute("aria-pressed", "false"); });
        b.setAttribute("aria-pressed", "true");
        onChange(v);
      });
      box.appendChild(b);
    });
    return box;
  };
  E.errorLine = function (container, err) {
    var msg = err && err.message ? err.message : String(err);
    container.appendChild(E.el("p", "error", E.esc(msg.split("\n")[0])));
  };

  /* A floating tooltip with an image and a caption, following the mouse. */
  var tip = null;
  E.showTip = function (html, x, y) {
    tip = tip || document.getElementById("tooltip");
    tip.innerHTML = html;
    tip.hidden = false;
    var w = tip.offsetWidth, h = tip.offsetHeight;
    var left = x + 16, top = y + 16;
    if (left + w > window.innerWidth - 8) left = x - w - 16;
    if (top + h > window.innerHeight - 8) top = y - h - 16;
    tip.style.left = Math.max(4, left) + "px";
    tip.style.top = Math.max(4, top) + "px";
  };
  E.hideTip = function () { (tip || document.getElementById("tooltip")).hidden = true; };
  E.mouse = {x: 0, y: 0};
  document.addEventListener("mousemove", function (ev) { E.mouse.x = ev.clientX; E.mouse.y = ev.clientY; }, true);

  // ---------------------------------------------------------------------------------------------------------------
  // selection and routing (#tab=contrast&a=ID&b=ID)
  function readHash() {
    var h = new URLSearchParams(location.hash.replace(/^#/, ""));
    return {tab: h.get("tab"), a: h.get("a"), b: h.get("b")};
  }
  function writeHash() {
    var next = "#tab=" + encodeURIComponent(E.state.tab.toLowerCase()) +
      (E.state.a ? "&a=" + E.seg(E.state.a) : "") + (E.state.b ? "&b=" + E.seg(E.state.b) : "");
    if (location.hash !== next) history.replaceState(null, "", location.pathname + location.search + next);
  }
  E.row = function (id) { return id ? E.state.byId[id] || null : null; };
  E.pick = function (slot, id) {
    E.state[slot] = id;
    if (slot === "a" && E.state.b === id) E.state.b = null;
    if (slot === "b" && E.state.a === id) E.state.a = null;
    writeHash();
    renderPicked();
    renderTabs();
    document.dispatchEvent(new CustomEvent("expunge:picked"));
  };
  E.go = function (tab) {
    E.state.tab = tab;
    writeHash();
    renderTabs();
    renderMain();
  };

  function renderPicked() {
    var box = document.getElementById("picked");
    var html = ["a", "b"].map(function (slot) {
      var r = E.row(E.state[slot]);
      return '<span class="chip ' + slot + '" title="' + E.esc(r ? r.id : "") + '"><b>' + slot.toUpperCase() +
             "</b> " + (r ? E.esc(E.label(r)) : '<i>pick in Screen</i>') + "</span>";
    }).join("");
    box.innerHTML = html;
  }

  E.taskTabs = function () {
    var tasks = {};
    [E.row(E.state.a), E.row(E.state.b)].forEach(function (r) { if (r) tasks[r.task] = true; });
    var extra = [];
    E.views.forEach(function (v) {
      if (TABS.indexOf(v.tab) >= 0 || v.tab === "Build" || extra.indexOf(v.tab) >= 0) return;
      if (v.tasks.some(function (t) { return tasks[t]; })) extra.push(v.tab);
    });
    return extra;
  };
  function visibleTabs() {
    var tabs = TABS.concat(E.taskTabs());
    // Build: not in an export, nor when the server says building is off (shown until /api/methods answers)
    if (!E.exported() && E.state.build !== false && E.views.some(function (v) { return v.tab === "Build"; })) {
      tabs.push("Build");
    }
    return tabs;
  }
  function renderTabs() {
    var nav = document.getElementById("tabs");
    var tabs = visibleTabs();
    if (tabs.indexOf(E.state.tab) < 0) { E.state.tab = "Screen"; }
    nav.innerHTML = tabs.map(function (t) {
      return '<button role="tab" data-tab="' + E.esc(t) + '" aria-selected="' + (t === E.state.tab) + '">' +
             E.esc(t) + "</button>";
    }).join("");
  }

  // ---------------------------------------------------------------------------------------------------------------
  // rendering a tab: its views, each in a card; model views get ctx.a / ctx.b rows
  E.supports = function (view, row) {
    if (!row) return "none";
    if (view.tasks.indexOf("*") < 0 && view.tasks.indexOf(row.task) < 0) return "task";
    if (Array.isArray(row.views) && row.views.indexOf(view.name) < 0) return row.has_model ? "task" : "model";
    if (row.has_model === false) return "model";
    return "ok";
  };
  var renderSerial = 0;
  function renderMain() {
    var main = document.getElementById("main");
    var serial = ++renderSerial;
    main.innerHTML = "";
    main.setAttribute("data-tab", E.state.tab.toLowerCase());
    var views = E.views.filter(function (v) { return v.tab === E.state.tab; });
    var a = E.row(E.state.a), b = E.row(E.state.b);
    var needsModel = views.some(function (v) { return !v.global; });
    if (needsModel && !E.state.rows.length) {
      E.empty(main, "No experiments yet. Run <code>expunge bench examples/bench_small.yaml</code>, then open " +
              "<code>expunge ui bench-small</code>.");
      return;
    }
    if (needsModel && !a) {
      E.empty(main, "Pick model A (and B to compare) in the Screen table.",
              {label: "Go to Screen", run: function () { E.go("Screen"); }});
      return;
    }
    views.forEach(function (view) {
      var card = E.el("section", "card view-" + view.name);
      card.setAttribute("data-view", view.name);
      if (view.title) card.appendChild(E.el("h2", "", E.esc(view.title)));
      var body = E.el("div", "card-body");
      card.appendChild(body);
      main.appendChild(card);
      if (!view.global) {
        var why = E.supports(view, a);
        if (why !== "ok") {
          card.classList.add("unavailable");
          if (why === "model") {
            E.empty(body, "No model kept for A (" + E.esc(E.label(a)) + "): this view needs the model file. " +
                    "Pick a row whose model was saved.");
          } else {
            E.empty(body, "The " + E.esc(view.title || view.name) + " view is not available for " +
                    E.esc(a.task) + " experiments.");
          }
          return;
        }
      }
      var ctx = {a: a, b: b && E.supports(view, b) === "ok" ? b : null, bRow: b, view: view,
                 alive: function () { return serial === renderSerial; }};
      var done;
      try { done = view.render(body, ctx); } catch (err) { done = Promise.reject(err); }
      Promise.resolve(done).catch(function (err) {
        if (serial !== renderSerial) return;
        body.querySelectorAll(".loading").forEach(function (n) { n.remove(); });
        if (err && err.status === 404 && E.exported()) {
          E.empty(body, "This view was not included in the export for this model.");
        } else {
          E.errorLine(body, err);
        }
      });
    });
  }
  E.rerender = renderMain;

  /* Loads (or reloads) the experiment list; keeps A and B when they still exist. */
  E.load = function (fresh) {
    var early = window.EXPUNGE_EARLY;      // the request index.html started before the scripts loaded
    window.EXPUNGE_EARLY = null;
    var request = !fresh && early && !E.exported() ? early.then(function (r) {
      if (!r.ok) throw new Error("retry");
      return r.json();
    }).catch(function () { return E.api("/api/experiments", {fresh: true}); }) : E.api("/api/experiments", {fresh: !!fresh});
    return request.then(function (data) {
      var rows = (data && data.experiments) || [];
      E.state.rows = rows;
      E.state.columns = (data && data.columns) || [];
      E.state.byId = {};
      rows.forEach(function (r) { E.state.byId[r.id] = r; });
      if (E.state.a && !E.state.byId[E.state.a]) E.state.a = null;
      if (E.state.b && !E.state.byId[E.state.b]) E.state.b = null;
      E.state.loaded = true;
      return rows;
    });
  };

  /* A link or the back button changed the hash: follow it. */
  function followHash() {
    var h = readHash();
    E.state.a = h.a && E.state.byId[h.a] ? h.a : null;
    E.state.b = h.b && E.state.byId[h.b] ? h.b : null;
    var wanted = (h.tab || "screen").toLowerCase();
    E.state.tab = "Screen";
    visibleTabs().forEach(function (t) { if (t.toLowerCase() === wanted) E.state.tab = t; });
    writeHash();
    renderPicked();
    renderTabs();
    renderMain();
  }

  E.start = function () {
    var main = document.getElementById("main");
    if (E.exported()) document.documentElement.classList.add("exported");
    document.getElementById("tabs").addEventListener("click", function (ev) {
      var t = ev.target.closest("button[data-tab]");
      if (t) E.go(t.getAttribute("data-tab"));
    });
    E.load(false).then(function () {
      followHash();
      window.addEventListener("hashchange", followHash);
      if (!E.exported()) {
        E.api("/api/methods").then(function (data) {
          E.state.build = !!(data && data.build);
          if (E.state.build) return;
          var onBuild = E.state.tab === "Build";
          renderTabs();
          if (onBuild) { writeHash(); renderMain(); }
        }, function () { /* the Build view shows the error when opened */ });
      }
    }, function (err) {
      main.innerHTML = "";
      E.errorLine(main, err);
      if (err.status === 401) {
        E.empty(main, "This server needs a token: open the page as <code>/?token=…</code> with the token " +
                "<code>expunge ui</code> was started with.");
      }
    });
  };
})();
