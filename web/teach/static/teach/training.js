// The training card: starts and cancels a training over the websocket, and draws loss and
// accuracy per epoch as the events arrive (from this tab or any other following the project).
(function () {
  "use strict";
  var card = document.querySelector("[data-teach-training]");
  if (!card || !window.WebSocket) { return; }
  var form = card.querySelector("[data-train-form]");
  var trainButton = card.querySelector("[data-train-button]");
  var cancelButton = card.querySelector("[data-cancel-button]");
  var errorBox = card.querySelector("[data-train-error]");
  var statusLine = card.querySelector("[data-train-status]");
  var timing = card.querySelector("[data-train-timing]");
  var svg = card.querySelector("[data-chart]");
  var SVG_NS = "http://www.w3.org/2000/svg";
  var BOX = { left: 36, right: 392, top: 10, bottom: 190 };
  var STATES = { queued: "Queued behind another training…", running: "Training…", succeeded: "Trained.", failed: "Training failed.", cancelled: "Training cancelled." };
  var socket = null, jobName = null, points = [], totalEpochs = 0, retryMs = 1000;

  function el(name, attrs, text) {
    var node = document.createElementNS(SVG_NS, name);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) { node.textContent = text; }
    svg.appendChild(node);
    return node;
  }
  function x(epoch) { return BOX.left + (BOX.right - BOX.left) * (epoch / Math.max(totalEpochs, 1)); }
  function y(value) { return BOX.bottom - (BOX.bottom - BOX.top) * Math.max(0, Math.min(1, value)); }

  function draw() {
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    [0, 0.5, 1].forEach(function (v) {
      el("line", { x1: BOX.left, x2: BOX.right, y1: y(v), y2: y(v), "class": "chart-grid" });
      el("text", { x: BOX.left - 6, y: y(v) + 4, "class": "chart-tick", "text-anchor": "end" }, v.toFixed(1));
    });
    el("text", { x: BOX.right, y: 212, "class": "chart-tick", "text-anchor": "end" }, "epoch " + (points.length ? points[points.length - 1].epoch : 0) + " of " + totalEpochs);
    if (!points.length) { return; }
    var maxLoss = Math.max.apply(null, points.map(function (p) { return p.loss; })) || 1;
    [["loss", "chart-loss", function (p) { return p.loss / maxLoss; }],
     ["accuracy", "chart-acc", function (p) { return p.accuracy; }],
     ["validation_accuracy", "chart-val", function (p) { return p.validation_accuracy; }]].forEach(function (series) {
      var coords = points.map(function (p) { return x(p.epoch).toFixed(1) + "," + y(series[2](p)).toFixed(1); });
      el("polyline", { points: coords.join(" "), "class": "chart-line " + series[1], "data-series": series[0] });
      points.forEach(function (p) { el("circle", { cx: x(p.epoch), cy: y(series[2](p)), r: 2.5, "class": "chart-dot " + series[1] }); });
    });
    el("text", { x: BOX.left + 4, y: BOX.top + 10, "class": "chart-tick" }, "loss scaled to its maximum " + maxLoss.toFixed(3));
  }

  function seconds(s) { s = Math.round(s); return s >= 60 ? Math.floor(s / 60) + " min " + (s % 60) + " s" : s + " s"; }

  function showJob(job) {
    if (!job) { statusLine.textContent = "Not trained yet."; draw(); return; }
    if (job.name !== jobName) { jobName = job.name; points = []; totalEpochs = 0; }
    var m = job.metrics;
    if (m) {
      totalEpochs = m.total_epochs;
      points = points.filter(function (p) { return p.epoch !== m.epoch; });
      points.push(m);
      points.sort(function (a, b) { return a.epoch - b.epoch; });
      timing.textContent = "Epoch " + m.epoch + " of " + m.total_epochs + " · loss " + m.loss.toFixed(3) +
        " · accuracy " + (m.accuracy * 100).toFixed(0) + "% · validation " + (m.validation_accuracy * 100).toFixed(0) +
        "% · elapsed " + seconds(m.elapsed_seconds) + (job.active ? " · about " + seconds(m.eta_seconds) + " left" : "");
    }
    statusLine.textContent = STATES[job.state] || job.state;
    if (job.state === "failed" && job.error_message) { statusLine.textContent += " " + job.error_message; }
    card.dataset.state = job.state;
    cancelButton.hidden = !job.active;
    trainButton.disabled = job.active;
    draw();
  }

  function showError(error) {
    errorBox.hidden = false;
    var text = error.message || "Something went wrong.";
    if (error.fields) {
      text += " " + Object.keys(error.fields).map(function (k) { return k.replace("_", " ") + ": " + error.fields[k].join(" "); }).join(" ");
    }
    errorBox.textContent = text;
    trainButton.disabled = false;
  }

  function connect() {
    socket = new WebSocket(window.teachCamera.socketUrl(card.dataset.wsPath));
    socket.onopen = function () { retryMs = 1000; card.dataset.socket = "open"; };
    socket.onmessage = function (event) {
      var message = JSON.parse(event.data);
      if (message.type === "job") { showJob(message.job); }
      else if (message.type === "error") { showError(message.error); }
    };
    socket.onclose = function (event) {
      card.dataset.socket = "closed";
      if (event.code === 4401 || event.code === 4404) { statusLine.textContent = "You cannot follow this project."; return; }
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 15000);
    };
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    errorBox.hidden = true;
    var settings = {};
    ["epochs", "batch_size", "learning_rate", "validation_split", "seed"].forEach(function (name) {
      var input = form.elements[name];
      if (input && input.value !== "") { settings[name] = Number(input.value); }
    });
    if (!socket || socket.readyState !== WebSocket.OPEN) { showError({ message: "Not connected; try again in a moment." }); return; }
    trainButton.disabled = true;
    statusLine.textContent = "Starting…";
    socket.send(JSON.stringify({ action: "train", settings: settings }));
  });
  cancelButton.addEventListener("click", function () {
    if (socket && socket.readyState === WebSocket.OPEN) { socket.send(JSON.stringify({ action: "cancel" })); }
  });
  draw();
  connect();
})();
