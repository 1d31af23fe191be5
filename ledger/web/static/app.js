// yikatong web: progressive enhancement only; every page reads without JavaScript.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // Forms that change the ledger ask first (批准 names the total).
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
    });
  });
  // Charts from the figures the tables beside them show (ECharts, vendored).
  var source = document.getElementById("chart-data");
  if (!source || typeof echarts === "undefined") { return; }
  var data = JSON.parse(source.textContent);
  var paid = document.getElementById("chart-paid");
  if (paid && data.periods.length) {
    echarts.init(paid).setOption({
      animation: false,  // drawn at once: slow office PCs, and screenshots show the figures
      title: { text: paid.getAttribute("data-title"), textStyle: { fontSize: 14 } },
      tooltip: { trigger: "axis" }, legend: { top: 24 }, grid: { top: 60 },
      xAxis: { type: "category", data: data.periods }, yAxis: { type: "value" },
      series: data.paid.map(function (s) { return { name: s.name, type: "bar", stack: "paid", data: s.values }; })
    });
  }
  var rate = document.getElementById("chart-rate");
  if (rate && data.months.length) {
    echarts.init(rate).setOption({
      animation: false,
      title: { text: rate.getAttribute("data-title"), textStyle: { fontSize: 14 } },
      tooltip: { trigger: "axis" }, legend: { top: 24 }, grid: { top: 60 },
      xAxis: { type: "category", data: data.months }, yAxis: { type: "value", min: 0, max: 100 },
      series: data.rates.map(function (s) { return { name: s.name, type: "line", data: s.values }; })
    });
  }
});
