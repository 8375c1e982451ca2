// Places the plot's slice ticks (data-left, a percentage): a style attribute would need CSP's unsafe-inline.
(function () {
  "use strict";
  document.querySelectorAll("[data-plot-ticks] li[data-left]").forEach(function (tick) {
    tick.style.left = tick.dataset.left + "%";
  });
})();
