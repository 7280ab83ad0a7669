// The overview's chart: best official home PGR over time, one line per researcher (released public
// PGR for researchers, exact public PGR for admins: the server decides, data.y_label says which).
// Data comes from <script type="application/json" id="progress-data"> (JSON.parse, never eval),
// so the page needs no inline script and the Content-Security-Policy forbids it.
(function () {
  "use strict";
  function draw() {
    var canvas = document.getElementById("progress-chart");
    var source = document.getElementById("progress-data");
    if (!canvas || !source || typeof Chart === "undefined") return;
    var data = JSON.parse(source.textContent);
    var palette = ["#2a5db0", "#c2410c", "#15803d", "#7e22ce", "#b91c1c", "#0e7490", "#a16207", "#be185d", "#4d7c0f"];
    var datasets = data.datasets.map(function (d, i) {
      var color = palette[i % palette.length];
      return {
        label: d.label,
        data: d.points.map(function (p) { return { x: p.x, y: p.y, run: p.run, pgr: p.pgr }; }),
        borderColor: color,
        backgroundColor: color,
        stepped: "after",
        pointRadius: 4,
        borderWidth: 2
      };
    });
    var when = function (ms) { return new Date(ms).toISOString().slice(0, 16).replace("T", " "); };
    window.aarProgressChart = new Chart(canvas, {
      type: "line",
      data: { datasets: datasets },
      options: {
        animation: false,
        maintainAspectRatio: false,
        parsing: false,
        scales: {
          x: { type: "linear", title: { display: true, text: "run finished (UTC)" },
               ticks: { callback: function (v) { return when(v); }, maxTicksLimit: 6 } },
          y: { title: { display: true, text: data.y_label || "best home PGR so far" } }
        },
        plugins: {
          tooltip: { callbacks: {
            title: function (items) { return items.length ? when(items[0].parsed.x) : ""; },
            label: function (item) {
              var p = item.raw;
              return item.dataset.label + ": best " + p.y.toFixed(3) + " (run " + p.run + ": " + p.pgr.toFixed(3) + ")";
            }
          } }
        }
      }
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", draw);
  else draw();
})();
