// Sends the chosen series zip in chunks with a progress bar; resumes after a dropped chunk.
(function () {
  "use strict";
  var form = document.querySelector("[data-series-upload]");
  if (!form || !window.fetch || !window.FormData || !window.Blob) { return; }
  var input = form.querySelector("input[type=file]");
  var button = form.querySelector("[data-upload-button]");
  var errorBox = form.querySelector("[data-upload-error]");
  var box = form.querySelector("[data-upload-progress]");
  var bar = form.querySelector("[data-upload-bar]");
  var percent = form.querySelector("[data-upload-percent]");
  var chunkBytes = parseInt(form.dataset.chunkBytes, 10);
  var maxBytes = parseInt(form.dataset.maxBytes, 10);
  var maxSize = form.dataset.maxSize || Math.round(maxBytes / 1048576) + " MB";
  var url = form.dataset.chunkUrl;
  var csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
    box.hidden = true;
    button.disabled = false;
  }

  function show(received, total) {
    var value = total ? Math.floor((received / total) * 100) : 0;
    bar.value = value;
    bar.textContent = value + "%";
    percent.textContent = value + "%";
  }

  function post(file, uploadId, offset) {
    var data = new FormData();
    data.append("upload_id", uploadId);
    data.append("offset", String(offset));
    data.append("total", String(file.size));
    data.append("chunk", file.slice(offset, Math.min(offset + chunkBytes, file.size)), "chunk");
    return fetch(url, {
      method: "POST", body: data, credentials: "same-origin",
      headers: { "X-CSRFToken": csrf, "Accept": "application/json" }
    }).then(function (response) {
      return response.json().then(function (body) { return { status: response.status, body: body }; });
    });
  }

  function resumeOffset(uploadId) {
    return fetch(url + encodeURIComponent(uploadId) + "/", { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (body) { return body ? body.received : null; });
  }

  function send(file, uploadId, offset, failures) {
    return post(file, uploadId, offset).then(function (answer) {
      var body = answer.body;
      if (answer.status === 201 && body.url) { show(file.size, file.size); window.location.assign(body.url); return; }
      if (answer.status === 200) { show(body.received, file.size); return send(file, body.upload_id, body.received, 0); }
      if (answer.status === 409 && typeof body.received === "number") { return send(file, uploadId, body.received, failures); }
      showError(body.error && body.error.message ? body.error.message : "The upload was refused.");
    }, function () {
      // The connection dropped: ask where the upload stands and go on from there.
      if (failures >= 5 || !uploadId) { showError("The connection was lost. Please try again."); return; }
      return new Promise(function (resolve) { setTimeout(resolve, 1000 * (failures + 1)); })
        .then(function () { return resumeOffset(uploadId); })
        .then(function (received) { return send(file, uploadId, received === null ? offset : received, failures + 1); },
              function () { return send(file, uploadId, offset, failures + 1); });
    });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    errorBox.hidden = true;
    var file = input.files && input.files[0];
    if (!file) { showError("Choose a series zip to upload."); return; }
    if (file.size === 0) { showError("The file is empty."); return; }
    if (file.size > maxBytes) { showError("The file is larger than the limit of " + maxSize + "."); return; }
    button.disabled = true;
    box.hidden = false;
    show(0, file.size);
    send(file, "", 0, 0);
  });
})();
