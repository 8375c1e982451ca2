// Polls the job's progress and shows it live; reloads the page once the job has finished.
(function () {
  "use strict";
  var card = document.querySelector("[data-job-progress]");
  if (!card || !window.fetch) { return; }
  var stage = card.querySelector("[data-stage]");
  var bar = card.querySelector("[data-bar]");
  var retry = card.querySelector("[data-retry]");
  var delay = 1000;

  function poll() {
    fetch(card.dataset.progressUrl, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) { if (!response.ok) { throw new Error(String(response.status)); } return response.json(); })
      .then(function (job) {
        if (job.status === "done" || job.status === "failed") { window.location.reload(); return; }
        var value = Math.round(job.progress * 100);
        bar.value = value;
        bar.textContent = value + "%";
        stage.textContent = job.stage_display + (job.status === "running" ? " (" + value + "%)" : "");
        // An automatic retry after a transient failure: why, when, and which attempt.
        if (retry) {
          retry.hidden = !job.retry;
          retry.textContent = job.retry ? "The analysis service could not take the series (" + job.retry.error.code + "). " + job.retry.message + "." : "";
        }
        delay = 1000;
        setTimeout(poll, delay);
      }, function () {
        delay = Math.min(delay * 2, 15000);
        setTimeout(poll, delay);
      });
  }
  setTimeout(poll, delay);
})();
