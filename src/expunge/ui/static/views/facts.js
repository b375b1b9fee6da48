/* Language models: the per-fact table (the original's, the unlearned model's and the oracle's answers side by side
   with the unlearned model's truth ratio, answer probability and Min-K%++ score). */
(function () {
  "use strict";
  var E = window.Expunge;

  function norm(s) { return String(s || "").toLowerCase().replace(/[^a-z0-9]+/g, " ").trim(); }
  function same(answer, truth) {
    var a = norm(answer), t = norm(truth);
    return !!t && (a === t || a.indexOf(t) >= 0);
  }
  function answerCell(text, truth) {
    var ok = same(text, truth);
    return '<td class="answer' + (ok ? " says-truth" : "") + '" title="' + (ok ? "gives the true answer" : "") + '">' +
           E.esc(text) + "</td>";
  }

  function render(container, ctx) {
    var wait = container.appendChild(E.el("p", "loading", "Computing…"));
    var reqs = [E.api(E.expPath(ctx.a.id, "facts"))];
    if (ctx.b) reqs.push(E.api(E.expPath(ctx.b.id, "facts")));
    return Promise.all(reqs).then(function (res) {
      wait.remove();
      var facts = (res[0] && res[0].facts) || [];
      if (!facts.length) { E.empty(container, "No facts were scored for this model."); return; }
      var bAnswers = {};
      if (res[1]) res[1].facts.forEach(function (f) { bAnswers[f.question] = f.model; });
      var bar = E.el("div", "toolbar");
      bar.innerHTML = '<input type="search" class="filter" placeholder="Filter questions and answers…" ' +
                      'aria-label="filter facts"><span class="count"></span><span class="hint">Green: the answer ' +
                      "contains the true answer. Truth ratio, probability and Min-K%++ are A’s.</span>";
      container.appendChild(bar);
      var wrap = E.el("div", "table-wrap");
      container.appendChild(wrap);
      var head = "<tr><th>question</th><th>true answer</th><th>original</th><th>A · " + E.esc(ctx.a.method) + "</th>" +
                 (res[1] ? "<th>B · " + E.esc(ctx.b.method) + "</th>" : "") +
                 '<th>oracle</th><th class="num">truth ratio</th><th class="num">probability</th>' +
                 '<th class="num">Min-K%++</th></tr>';
      wrap.innerHTML = '<table class="facts"><thead>' + head + "</thead><tbody></tbody></table>";
      var tbody = wrap.querySelector("tbody");
      function fill(filter) {
        var words = norm(filter).split(" ").filter(Boolean);
        var shown = facts.filter(function (f) {
          var text = norm([f.question, f.answer, f.original, f.model, f.oracle].join(" "));
          return words.every(function (w) { return text.indexOf(w) >= 0; });
        });
        tbody.innerHTML = shown.map(function (f) {
          return "<tr><td class=\"question\">" + E.esc(f.question) + "</td><td>" + E.esc(f.answer) + "</td>" +
                 answerCell(f.original, f.answer) + answerCell(f.model, f.answer) +
                 (res[1] ? answerCell(bAnswers[f.question], f.answer) : "") + answerCell(f.oracle, f.answer) +
                 '<td class="num">' + E.fmt(f.truth_ratio, 3) + '</td><td class="num">' + E.fmt(f.probability, 3) +
                 '</td><td class="num">' + E.fmt(f.mink_pp, 3) + "</td></tr>";
        }).join("");
        bar.querySelector(".count").textContent = shown.length + " of " + facts.length + " facts";
      }
      bar.querySelector("input").addEventListener("input", function (ev) { fill(ev.target.value); });
      fill("");
    });
  }

  E.registerView({name: "facts", title: "Facts: answers side by side", tab: "Facts", order: 30,
                  tasks: ["language"], render: render});
})();
