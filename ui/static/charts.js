// Draw every <canvas data-chart="ID"> with Chart.js from the JSON in <script id="ID">
// (type application/json, beside the canvas), and follow a point's drill-down link on click.
// Runs on page load and after every htmx swap; a canvas is drawn once.
(function () {
  "use strict";
  var PALETTE = ["#0a58ca", "#b45309", "#15803d", "#7e22ce", "#be123c", "#0e7490"];

  function draw(canvas) {
    if (canvas.dataset.drawn === "true" || typeof Chart === "undefined") return;
    var source = document.getElementById(canvas.dataset.chart);
    if (!source) return;
    var spec = JSON.parse(source.textContent);
    canvas.dataset.drawn = "true";
    var links = spec.links || [];
    new Chart(canvas, {
      type: spec.kind === "line" ? "line" : "bar",
      data: {
        labels: spec.labels,
        datasets: spec.series.map(function (series, index) {
          var colour = PALETTE[index % PALETTE.length];
          return { label: series.label, data: series.data, backgroundColor: colour,
                   borderColor: colour, pointRadius: 3 };
        })
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: "index", intersect: false },
        onClick: function (event, elements) {
          if (!elements.length) return;
          var link = links[elements[0].index];
          if (link) window.location.assign(link);
        },
        onHover: function (event, elements) {
          var target = event.native && event.native.target;
          if (target) target.style.cursor = elements.length && links[elements[0].index] ? "pointer" : "default";
        }
      }
    });
  }

  function drawAll(root) {
    (root || document).querySelectorAll("canvas[data-chart]").forEach(draw);
  }

  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  document.addEventListener("htmx:afterSettle", function (event) { drawAll(event.target); });
})();
