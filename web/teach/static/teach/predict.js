// The live test: webcam frames over a websocket, one at a time (the next is sent when the
// previous prediction came back), with a bar per label and the rate of predictions.
(function () {
  "use strict";
  var card = document.querySelector("[data-teach-predict]");
  if (!card || !window.WebSocket) { return; }
  var cam = window.teachCamera;
  var video = card.querySelector("[data-camera-video]");
  var status = card.querySelector("[data-predict-status]");
  var fpsLine = card.querySelector("[data-fps]");
  var topLabel = card.querySelector("[data-top-label]");
  var maxFps = parseInt(card.dataset.maxFps, 10) || 10;
  var canvas = document.createElement("canvas");
  var socket = null, waiting = false, times = [], cameraOn = false, lastSent = 0, stopped = false;

  function showPrediction(p) {
    var now = performance.now();
    times.push(now);
    while (times.length && now - times[0] > 2000) { times.shift(); }
    // The rate over the last 2 s, or over what has passed of them since the first prediction.
    var span = times.length > 1 ? (now - times[0]) / 1000 : 0;
    var rate = span > 0 ? (times.length - 1) / span : 0;
    fpsLine.textContent = rate.toFixed(1) + " predictions/s · " + p.latency_ms.toFixed(0) + " ms per frame";
    topLabel.textContent = p.top_label;
    card.dataset.predictions = String((parseInt(card.dataset.predictions || "0", 10)) + 1);
    p.scores.forEach(function (s) {
      var row = card.querySelector('[data-bar="' + CSS.escape(s.label) + '"]');
      if (!row) { return; }
      var percent = (s.score * 100).toFixed(1);
      row.querySelector(".prob-fill").style.width = percent + "%";
      row.querySelector(".prob-value").textContent = percent + "%";
      row.classList.toggle("prob-top", s.label === p.top_label);
    });
  }

  function sendFrame() {
    if (stopped || waiting || !cameraOn || !socket || socket.readyState !== WebSocket.OPEN) { return; }
    var wait = 1000 / maxFps - (performance.now() - lastSent);
    if (wait > 0) { setTimeout(sendFrame, wait); return; }
    waiting = true;
    cam.grab(video, canvas, 0.8, function (blob) {
      if (!blob) { waiting = false; setTimeout(sendFrame, 200); return; }
      blob.arrayBuffer().then(function (buffer) {
        lastSent = performance.now();
        socket.send(buffer);
      });
    });
  }

  function connect() {
    socket = new WebSocket(cam.socketUrl(card.dataset.wsPath));
    socket.binaryType = "arraybuffer";
    socket.onopen = function () { status.textContent = cameraOn ? "Classifying…" : status.textContent; waiting = false; sendFrame(); };
    socket.onmessage = function (event) {
      var message = JSON.parse(event.data);
      if (message.type === "prediction") { waiting = false; showPrediction(message); sendFrame(); }
      else if (message.type === "error") { status.textContent = message.error.message; card.dataset.error = message.error.code; }
    };
    socket.onclose = function (event) {
      if (event.code >= 4000 || event.code === 1009) { stopped = true; return; }
      setTimeout(connect, 2000);
    };
  }

  cam.start(video, status, function (ok) {
    cameraOn = ok;
    if (ok) { status.textContent = "Classifying…"; sendFrame(); }
  });
  connect();
})();
