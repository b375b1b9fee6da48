/* Build: start an unlearning run from the page (a base experiment's data, model and recipe with a method, its
   arguments and optionally another forget request), follow its progress (server-sent events, polling as a
   fallback) and see its row land in Screen. */
(function () {
  "use strict";
  var E = window.Expunge;
  var FORGET_KINDS = [["same", "as the base experiment"], ["fraction", "a random share (0–1)"],
                      ["classes", "whole classes (comma-separated)"], ["indices", "training rows (comma-separated)"],
                      ["groups", "groups (comma-separated)"], ["group_fraction", "a share of the groups (0–1)"]];
  var form = {base: null, method: null, args: {}, forget: "same", forgetValue: "", seed: "", mode: "base",
              kind: "bench", config: null};
  // a starting point for a config written on the page: a small bench on the bundled digits (as
  // examples/bench_small.yaml, one seed); the form's JSON is sent as is and checked as the command line checks it
  var BENCH_EXAMPLE = {name: "page-bench", seeds: 1, data: {name: "digits", test_fraction: 0.2},
                       model: {name: "mlp", args: {hidden: [64]}},
                       train: {epochs: 15, lr: 0.05, batch_size: 64, schedule: "cosine"},
                       scenarios: [{name: "random 10%", fraction: 0.1}, {name: "class 3", classes: [3]}],
                       methods: {finetune: {epochs: 5, lr: 0.05}, gradient_ascent: {epochs: 3, lr: 0.01}}};
  var RUN_EXAMPLE = {name: "page-run", seed: 0, data: {name: "digits", test_fraction: 0.2},
                     model: {name: "mlp", args: {hidden: [64]}},
                     train: {epochs: 15, lr: 0.05, batch_size: 64, schedule: "cosine"},
                     forget: {fraction: 0.1}, method: "finetune", args: {epochs: 5, lr: 0.05}};
  var watched = {};     // job id -> true while its stream or poll is open

  function argInput(name, def, value) {
    var id = "arg-" + name;
    var v = value === undefined ? def : value;
    if (typeof def === "boolean") {
      return '<label class="arg check" for="' + id + '"><input type="checkbox" id="' + id + '" data-arg="' +
             E.esc(name) + '" data-type="bool"' + (v ? " checked" : "") + "> " + E.esc(name) + "</label>";
    }
    var type = typeof def === "number" ? "number" : (typeof def === "string" ? "string" : "json");
    var shown = type === "json" ? JSON.stringify(v === undefined ? null : v) : (v === null ? "" : v);
    return '<label class="arg" for="' + id + '"><span>' + E.esc(name) + '</span><input id="' + id + '" data-arg="' +
           E.esc(name) + '" data-type="' + type + '" value="' + E.esc(shown) + '"' +
           (type === "number" ? ' inputmode="decimal"' : "") + "></label>";
  }

  function readArgs(box, defaults) {
    var out = {}, bad = null;
    box.querySelectorAll("[data-arg]").forEach(function (input) {
      var name = input.getAttribute("data-arg"), type = input.getAttribute("data-type"), v;
      if (type === "bool") v = input.checked;
      else if (type === "number") {
        v = input.value.trim() === "" ? null : Number(input.value);
        if (v !== null && !isFinite(v)) bad = bad || name + " must be a number; got " + JSON.stringify(input.value);
      } else if (type === "string") v = input.value;
      else {
        try { v = input.value.trim() === "" ? null : JSON.parse(input.value); } catch (e) {
          bad = bad || name + " must be JSON (a number, list, true/false or null); got " + input.value;
        }
      }
      if (JSON.stringify(v) !== JSON.stringify(defaults[name])) out[name] = v;
    });
    if (bad) throw new Error(bad);
    return out;
  }

  function list(text, numeric) {
    return text.split(",").map(function (s) { return s.trim(); }).filter(Boolean).map(function (s) {
      if (!numeric) return isFinite(Number(s)) ? Number(s) : s;
      var n = Number(s);
      if (!Number.isInteger(n)) throw new Error("expected whole numbers separated by commas; got " + JSON.stringify(s));
      return n;
    });
  }

  function render(container, ctx) {
    if (E.exported()) {
      E.empty(container, "This is a static export: building runs needs the comparator server (expunge ui).");
      return;
    }
    var left = E.el("div", "build-form");
    var right = E.el("div", "build-jobs");
    var grid = E.el("div", "build-grid");
    grid.appendChild(left);
    grid.appendChild(right);
    container.appendChild(grid);
    right.appendChild(E.el("h3", "", "Runs started here"));
    var jobsBox = E.el("div", "jobs");
    right.appendChild(jobsBox);
    var wait = left.appendChild(E.el("p", "loading", "Loading methods…"));
    return E.api("/api/methods").then(function (data) {
      wait.remove();
      if (data && data.build === false) {
        E.empty(left, "Building is turned off for this server (started with --no-build).");
        return;
      }
      var methods = (data && data.methods) || [];
      var bases = E.state.rows.filter(function (r) { return (r.status === "FINISHED" || !r.status) && r.kind !== "audit"; });
      if (!bases.length) form.mode = "config";
      if (bases.length && (!form.base || !E.row(form.base))) {
        form.base = E.state.a && E.row(E.state.a) ? E.state.a : bases[0].id;
      }
      var modes = E.el("div", "toolbar");
      modes.appendChild(E.segmented("source", [{value: "base", label: "From an experiment"},
                                   {value: "config", label: "From a config (run or bench)"}], form.mode, function (v) {
        form.mode = v;
        draw();
      }));
      left.appendChild(modes);
      var body = E.el("div", "");
      left.appendChild(body);
      function draw() {
        if (form.mode === "base" && !bases.length) {
          body.innerHTML = "";
          E.empty(body, "A run from an experiment reuses its data, model, recipe and forget request, and there is " +
                  "none yet: write a config instead, or run <code>expunge bench examples/bench_small.yaml</code> " +
                  "and open <code>expunge ui bench-small</code>.");
        } else if (form.mode === "base") {
          drawBase(body, methods, bases, jobsBox);
        } else {
          drawConfig(body, jobsBox);
        }
      }
      draw();
      return loadJobs(jobsBox);
    });
  }

  /* Submits a build request; the new job's card appears and is followed, or the server's one-line error shows. */
  function submit(f, body, jobsBox) {
    var err = f.querySelector(".error");
    var button = f.querySelector("button[type=submit]");
    button.disabled = true;
    button.textContent = "Checking…";
    E.api("/api/build", {method: "POST", body: body}).then(function (job) {
      button.disabled = false;
      button.textContent = "Start";
      showJob(jobsBox, job, true);
      follow(jobsBox, job.job);
    }, function (e) {
      button.disabled = false;
      button.textContent = "Start";
      err.textContent = e.message;
      err.hidden = false;
    });
  }

  function drawConfig(left, jobsBox) {
    if (form.config === null) form.config = JSON.stringify(form.kind === "bench" ? BENCH_EXAMPLE : RUN_EXAMPLE, null, 2);
    left.innerHTML =
      '<form class="build config" novalidate>' +
      '<label class="field"><span>Kind</span><select name="kind">' +
      '<option value="bench"' + (form.kind === "bench" ? " selected" : "") + ">a small bench (expunge bench)</option>" +
      '<option value="run"' + (form.kind === "run" ? " selected" : "") + ">one run (expunge run)</option></select>" +
      "<small>the same settings as the command's YAML file, written as JSON, without <code>out</code></small></label>" +
      '<label class="field"><span>Config</span><textarea name="config" rows="16" spellcheck="false">' +
      E.esc(form.config) + "</textarea></label>" +
      '<div class="actions"><button type="submit" class="primary">Start</button>' +
      '<p class="error" role="alert" hidden></p></div></form>';
    var f = left.querySelector("form");
    f.kind.addEventListener("change", function () {
      var example = JSON.stringify(form.kind === "bench" ? BENCH_EXAMPLE : RUN_EXAMPLE, null, 2);
      form.kind = f.kind.value;
      if (form.config === example) form.config = null;      // untouched: show the other kind's example
      drawConfig(left, jobsBox);
    });
    f.config.addEventListener("input", function () { form.config = f.config.value; });
    f.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var err = f.querySelector(".error");
      err.hidden = true;
      var config;
      try {
        config = JSON.parse(f.config.value);
      } catch (e) {
        err.textContent = "the config is not valid JSON (" + e.message + ")";
        err.hidden = false;
        return;
      }
      submit(f, {kind: form.kind, config: config}, jobsBox);
    });
  }

  function drawBase(left, methods, bases, jobsBox) {
    function draw() { drawBase(left, methods, bases, jobsBox); }
    var base = E.row(form.base) || bases[0];
    var fits = methods.filter(function (m) { return !m.tasks || !m.tasks.length || m.tasks.indexOf(base.task) >= 0; });
    if (!fits.some(function (m) { return m.name === form.method; })) {
      form.method = (fits.filter(function (m) { return m.name === base.method; })[0] || fits[0] || {}).name || null;
      form.args = {};
    }
    if (form.fresh !== false && form.method === base.method && base.args && typeof base.args === "object") {
      form.args = Object.assign({}, base.args);     // start from the base run's own arguments
    }
    form.fresh = false;
    var method = fits.filter(function (m) { return m.name === form.method; })[0];
    var defaults = method ? method.args || {} : {};
    left.innerHTML =
      '<form class="build" novalidate>' +
      '<label class="field"><span>Base experiment</span><select name="base">' +
      bases.map(function (r) {
        return '<option value="' + E.esc(r.id) + '"' + (r.id === base.id ? " selected" : "") + ">" +
               E.esc(E.label(r) + (r.args && Object.keys(r.args).length ? " · " + E.argsText(r.args) : "")) +
               "</option>";
      }).join("") + "</select><small>its data, model, recipe and seed are reused</small></label>" +
      '<label class="field"><span>Method</span><select name="method">' +
      fits.map(function (m) {
        return '<option value="' + E.esc(m.name) + '"' + (m.name === form.method ? " selected" : "") + ">" +
               E.esc(m.name) + "</option>";
      }).join("") + "</select><small>" + E.esc(method && method.summary ? method.summary : "") + "</small></label>" +
      '<fieldset class="args"><legend>Arguments <small>(defaults shown; only changed values are sent)</small>' +
      "</legend>" + (Object.keys(defaults).length ? Object.keys(defaults).map(function (k) {
        return argInput(k, defaults[k], form.args[k]);
      }).join("") : "<p class=\"none\">This method takes no arguments.</p>") + "</fieldset>" +
      '<fieldset class="forget"><legend>Forget request</legend><select name="forget">' +
      FORGET_KINDS.map(function (f) {
        return '<option value="' + f[0] + '"' + (f[0] === form.forget ? " selected" : "") + ">" +
               (f[0] === "same" ? "same " : f[0] + ": ") + f[1] + "</option>";
      }).join("") + '</select><input name="forgetValue" aria-label="forget value" placeholder="e.g. 0.1 or 3, 5" ' +
      'value="' + E.esc(form.forgetValue) + '"' + (form.forget === "same" ? " hidden" : "") + "></fieldset>" +
      '<label class="field seed"><span>Seed</span><input name="seed" inputmode="numeric" placeholder="as the base" ' +
      'value="' + E.esc(form.seed) + '"></label>' +
      '<div class="actions"><button type="submit" class="primary">Start</button>' +
      '<p class="error" role="alert" hidden></p></div></form>';
    var f = left.querySelector("form");
    f.base.addEventListener("change", function () { form.base = f.base.value; form.fresh = true; draw(); });
    f.method.addEventListener("change", function () {
      form.method = f.method.value; form.args = {}; form.fresh = true; draw();
    });
    f.forget.addEventListener("change", function () {
      form.forget = f.forget.value;
      f.forgetValue.hidden = form.forget === "same";
    });
    f.forgetValue.addEventListener("input", function () { form.forgetValue = f.forgetValue.value; });
    f.seed.addEventListener("input", function () { form.seed = f.seed.value; });
    f.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var err = f.querySelector(".error");
      err.hidden = true;
      var body;
      try {
        body = {kind: "run", base: form.base, method: form.method, args: readArgs(f, defaults)};
        if (form.forget !== "same") {
          var text = form.forgetValue.trim();
          if (!text) throw new Error("give the forget request's value (" + form.forget + ")");
          var v;
          if (form.forget === "fraction" || form.forget === "group_fraction") {
            v = Number(text);
            if (!(v > 0 && v < 1)) throw new Error(form.forget + " must be a number strictly between 0 and 1; got " + text);
          } else {
            v = list(text, form.forget !== "groups");
          }
          body.forget = {};
          body.forget[form.forget] = v;
        }
        if (form.seed.trim() !== "") {
          var s = Number(form.seed);
          if (!Number.isInteger(s) || s < 0) throw new Error("seed must be a whole number >= 0; got " + form.seed);
          body.seed = s;
        }
      } catch (e) {
        err.textContent = e.message;
        err.hidden = false;
        return;
      }
      submit(f, body, jobsBox);
    });
  }

  function loadJobs(box) {
    return E.api("/api/build", {fresh: true}).then(function (data) {
      var jobs = (data && data.jobs) || [];
      jobs.sort(function (x, y) { return (y.created || 0) - (x.created || 0); });
      if (!jobs.length && !box.children.length) {
        box.appendChild(E.el("p", "none", "None yet. A run you start appears here with its progress."));
      }
      jobs.forEach(function (j) {
        showJob(box, j, false);
        if (j.status === "queued" || j.status === "running") follow(box, j.job);
      });
    }, function () { /* the list is a convenience; the form still works */ });
  }

  function showJob(box, job, first) {
    var none = box.querySelector("p.none");
    if (none) none.remove();
    var id = job.job;
    var card = box.querySelector('[data-job="' + id + '"]');
    if (!card) {
      card = E.el("div", "job");
      card.setAttribute("data-job", id);
      if (first) box.insertBefore(card, box.firstChild); else box.appendChild(card);
    }
    var lines = (job.progress || []).slice(-8);
    var row = job.experiment ? E.row(job.experiment) : null;
    card.className = "job " + job.status;
    card.innerHTML =
      '<div class="job-head"><b>' + E.esc(job.kind === "bench" ? "bench " + (job.name || "") : job.method || "run") +
      '</b><span class="badge ' + E.esc(job.status) + '">' +
      E.esc(job.status) + "</span><code>" + E.esc(id) + "</code></div>" +
      (job.error ? '<p class="error">' + E.esc(String(job.error).split("\n")[0]) + "</p>" : "") +
      '<pre class="progress">' + E.esc(lines.join("\n")) + "</pre>" +
      (job.status === "finished" && job.experiment ? '<p class="landed">Recorded: ' +
        (row ? E.esc(E.label(row)) + " " : "") + '<button class="link" data-open="' + E.esc(job.experiment) +
        '">show in Screen as A</button></p>' : "") +
      (job.status === "finished" && !job.experiment ? '<p class="landed">Finished: its rows are in Screen ' +
        '<button class="link" data-screen>go to Screen</button></p>' : "");
    var screen = card.querySelector("[data-screen]");
    if (screen) screen.addEventListener("click", function () { E.go("Screen"); });
    var open = card.querySelector("[data-open]");
    if (open) {
      open.addEventListener("click", function () {
        E.pick("a", open.getAttribute("data-open"));
        E.go("Screen");
      });
    }
  }

  /* Follows a job until it ends, on whatever tab the page is: its card (when Build is open) shows each state; at
     the end the experiment list is read again, so the new row is in Screen. */
  function follow(box, id) {
    if (watched[id]) return;
    watched[id] = true;
    function show(job) {
      var current = box.isConnected ? box : document.querySelector(".build-jobs .jobs");
      if (current) showJob(current, job, false);
    }
    function done(job) {
      delete watched[id];
      E.forget("/api/experiments");
      return E.load(true).then(function () {
        show(job);
        if (E.state.tab === "Screen") E.rerender();
      });
    }
    function poll() {
      E.api("/api/build/" + encodeURIComponent(id), {fresh: true}).then(function (job) {
        show(job);
        if (job.status === "finished" || job.status === "failed") done(job);
        else setTimeout(poll, 700);
      }, function () { setTimeout(poll, 2000); });
    }
    if (typeof EventSource !== "function") { poll(); return; }
    var es = new EventSource(E.withToken("/api/build/" + encodeURIComponent(id) + "/events"));
    es.onmessage = function (ev) {
      var job;
      try { job = JSON.parse(ev.data); } catch (e) { return; }
      show(job);
      if (job.status === "finished" || job.status === "failed") { es.close(); done(job); }
    };
    es.onerror = function () {
      es.close();
      if (watched[id]) { poll(); }
    };
  }

  E.registerView({name: "build", title: "Build a run or a bench", tab: "Build", global: true, order: 90, render: render});
})();
