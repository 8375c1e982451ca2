// The capture page: "hold to capture" per label (about 5 frames a second), a file picker, and
// batched uploads of the examples to the web tier, which checks them and sends them on.
(function () {
  "use strict";
  var root = document.querySelector("[data-teach-capture]");
  if (!root || !window.fetch) { return; }
  var cam = window.teachCamera;
  var video = document.querySelector("[data-camera-video]");
  var status = document.querySelector("[data-camera-status]");
  var csrf = root.querySelector("input[name=csrfmiddlewaretoken]").value;
  var maxBatch = parseInt(root.dataset.maxBatch, 10) || 50;
  var canvas = document.createElement("canvas");
  var CAPTURE_INTERVAL_MS = 200;
  var FLUSH_INTERVAL_MS = 1000;
  var MAX_THUMBS = 24;

  function Label(card) {
    this.card = card;
    this.name = card.dataset.label;
    this.count = card.querySelector("[data-count]");
    this.state = card.querySelector("[data-upload-state]");
    this.thumbs = card.querySelector("[data-thumbs]");
    this.pending = [];
    this.grabbing = 0;  // frames being encoded: they still count as on their way
    this.sending = false;
    this.timer = null;
  }

  // Tells tests and styles whether examples of this label are still on their way.
  Label.prototype.mark = function () {
    var busy = this.sending || this.pending.length || this.grabbing || this.timer !== null;
    this.card.dataset.busy = busy ? "true" : "false";
  };

  Label.prototype.add = function (blob) {
    this.pending.push(blob);
    this.mark();
    var url = URL.createObjectURL(blob);
    var li = document.createElement("li");
    var img = document.createElement("img");
    img.src = url; img.alt = ""; img.width = 48; img.height = 36;
    li.appendChild(img);
    this.thumbs.insertBefore(li, this.thumbs.firstChild);
    while (this.thumbs.children.length > MAX_THUMBS) {
      var last = this.thumbs.lastChild;
      URL.revokeObjectURL(last.firstChild.src);
      this.thumbs.removeChild(last);
    }
  };

  // Sends what waits, at most maxBatch images per request; one request at a time per label.
  Label.prototype.flush = function () {
    var self = this;
    if (self.sending || !self.pending.length) { self.mark(); return; }
    var batch = self.pending.splice(0, maxBatch);
    var body = new FormData();
    body.append("label", self.name);
    batch.forEach(function (blob, i) { body.append("images", blob, "frame-" + i + ".jpg"); });
    self.sending = true;
    self.state.textContent = "Sending " + batch.length + "…";
    fetch(root.dataset.examplesUrl, {
      method: "POST", body: body, credentials: "same-origin",
      headers: { "X-CSRFToken": csrf, "Accept": "application/json" }
    }).then(function (response) {
      return response.json().then(function (data) { return { ok: response.ok, data: data }; });
    }).then(function (result) {
      self.sending = false;
      self.mark();
      if (!result.ok) {
        self.state.textContent = (result.data.error && result.data.error.message) || "The examples were refused.";
        self.card.classList.add("label-error");
        return;
      }
      self.card.classList.remove("label-error");
      Object.keys(result.data.counts).forEach(function (name) {
        var other = labels[name];
        if (other) { other.count.textContent = result.data.counts[name]; }
      });
      self.state.textContent = "Saved " + result.data.accepted + ".";
      self.flush();
    }, function () {
      self.sending = false;
      self.state.textContent = "Could not reach the server; retrying.";
      self.pending = batch.concat(self.pending);
      setTimeout(function () { self.flush(); }, 2000);
    });
  };

  var labels = {};
  Array.prototype.forEach.call(root.querySelectorAll("[data-label]"), function (card) {
    var label = new Label(card);
    labels[label.name] = label;
    var hold = card.querySelector("[data-hold-capture]");
    var flushTimer = null;

    function stop() {
      if (label.timer === null) { return; }
      clearInterval(label.timer); clearInterval(flushTimer);
      label.timer = null;
      hold.classList.remove("capturing");
      label.mark();
      label.flush();
    }
    function begin(event) {
      event.preventDefault();
      if (label.timer !== null || hold.disabled) { return; }
      hold.classList.add("capturing");
      var take = function () {
        label.grabbing += 1;
        cam.grab(video, canvas, 0.85, function (blob) {
          label.grabbing -= 1;
          if (blob) { label.add(blob); }
          // A frame encoded after the button was released missed stop()'s flush: send it now.
          if (label.timer === null) { label.flush(); }
        });
      };
      take();
      label.timer = setInterval(take, CAPTURE_INTERVAL_MS);
      flushTimer = setInterval(function () { label.flush(); }, FLUSH_INTERVAL_MS);
    }
    hold.addEventListener("pointerdown", begin);
    hold.addEventListener("keydown", function (e) { if (e.key === " " || e.key === "Enter") { begin(e); } });
    ["pointerup", "pointerleave", "pointercancel", "blur"].forEach(function (n) { hold.addEventListener(n, stop); });
    hold.addEventListener("keyup", stop);

    card.querySelector("[data-file-picker]").addEventListener("change", function (event) {
      Array.prototype.forEach.call(event.target.files, function (file) { label.add(file); });
      event.target.value = "";
      label.flush();
    });
  });

  cam.start(video, status, function (ok) {
    Array.prototype.forEach.call(root.querySelectorAll("[data-hold-capture]"), function (b) { b.disabled = !ok; });
  });
})();
