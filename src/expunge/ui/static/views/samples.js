/* Image generators: per-class sample grids of the original, the unlearned model(s) and the oracle, drawn from the
   same noise, one row per class. */
(function () {
  "use strict";
  var E = window.Expunge;

  function render(container, ctx) {
    var wait = container.appendChild(E.el("p", "loading", "Sampling…"));
    var reqs = [E.api(E.expPath(ctx.a.id, "samples"))];
    if (ctx.b) reqs.push(E.api(E.expPath(ctx.b.id, "samples")));
    return Promise.all(reqs).then(function (res) {
      wait.remove();
      var a = res[0], b = res[1];
      var panels = [["original", a.grids.original, "original"], ["A · " + ctx.a.method, a.grids.model, "a"]];
      if (b) panels.push(["B · " + ctx.b.method, b.grids.model, "b"]);
      panels.push(["oracle", a.grids.oracle, "oracle"]);
      container.appendChild(E.el("p", "note", "Rows are classes (" + (a.classes || []).map(E.esc).join(", ") +
                                 "); every grid uses the same noise" + (a.seed !== undefined ? " (seed " +
                                 E.esc(a.seed) + ")" : "") + ", so a row differs only by the model." +
                                 (b && b.seed !== a.seed ? " B's grid used another seed." : "")));
      var grid = E.el("div", "sample-grids");
      panels.forEach(function (p) {
        if (!p[1]) return;
        var fig = E.el("figure", "sample " + p[2]);
        fig.innerHTML = '<figcaption class="' + p[2] + '">' + E.esc(p[0]) + '</figcaption><img alt="' +
                        E.esc(p[0]) + ' samples" src="' + E.esc(p[1]) + '">';
        grid.appendChild(fig);
      });
      container.appendChild(grid);
    });
  }

  E.registerView({name: "samples", title: "Samples per class", tab: "Samples", order: 40,
                  tasks: ["generation"], render: render});
})();
