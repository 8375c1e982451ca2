// Upload page: drag and drop or pick a photo, preview it, check its type and size before
// sending. The server checks everything again; this only saves a wasted upload.
(function () {
  "use strict";

  var form = document.querySelector("[data-upload-form]");
  if (!form) {
    return;
  }
  var zone = form.querySelector("[data-dropzone]");
  var input = form.querySelector("input[type=file]");
  var preview = form.querySelector("[data-preview]");
  var previewImage = form.querySelector("[data-preview-image]");
  var previewName = form.querySelector("[data-preview-name]");
  var problem = form.querySelector("[data-client-error]");
  var submit = form.querySelector("[type=submit]");
  var maxBytes = parseInt(zone.getAttribute("data-max-bytes"), 10);
  var accepted = zone.getAttribute("data-accepted").split(",");
  var objectUrl = null;

  function megabytes(bytes) {
    if (bytes < 1024 * 1024) {
      return Math.max(1, Math.round(bytes / 1024)) + " KB";
    }
    return (bytes / (1024 * 1024)).toFixed(1) + " MB";
  }

  function check(file) {
    if (!file) {
      return "Choose a photo to upload.";
    }
    if (accepted.indexOf(file.type) === -1) {
      return "This file type is not accepted: choose a JPEG or PNG photo.";
    }
    if (file.size === 0) {
      return "The file is empty: choose another photo.";
    }
    if (file.size > maxBytes) {
      return "The photo is " + megabytes(file.size) + "; the limit is " + megabytes(maxBytes) + ".";
    }
    return "";
  }

  function showProblem(message) {
    problem.textContent = message;
    problem.hidden = !message;
    zone.classList.toggle("dropzone-invalid", Boolean(message));
    input.setAttribute("aria-invalid", message ? "true" : "false");
  }

  function clearPreview() {
    if (objectUrl) {
      URL.revokeObjectURL(objectUrl);
      objectUrl = null;
    }
    preview.hidden = true;
    previewImage.removeAttribute("src");
    previewName.textContent = "";
  }

  function choose(file) {
    clearPreview();
    var message = check(file);
    showProblem(message);
    submit.disabled = Boolean(message);
    if (message) {
      return;
    }
    objectUrl = URL.createObjectURL(file);
    previewImage.src = objectUrl;
    previewName.textContent = file.name + " · " + megabytes(file.size);
    preview.hidden = false;
  }

  input.addEventListener("change", function () {
    choose(input.files[0]);
  });

  ["dragenter", "dragover"].forEach(function (name) {
    zone.addEventListener(name, function (event) {
      event.preventDefault();
      zone.classList.add("dropzone-active");
    });
  });
  ["dragleave", "dragend", "drop"].forEach(function (name) {
    zone.addEventListener(name, function () {
      zone.classList.remove("dropzone-active");
    });
  });
  zone.addEventListener("drop", function (event) {
    event.preventDefault();
    var files = event.dataTransfer && event.dataTransfer.files;
    if (!files || files.length === 0) {
      return;
    }
    if (files.length > 1) {
      showProblem("Drop one photo at a time.");
      return;
    }
    var transfer = new DataTransfer();
    transfer.items.add(files[0]);
    input.files = transfer.files;
    choose(files[0]);
  });

  form.addEventListener("submit", function (event) {
    var message = check(input.files[0]);
    if (message) {
      event.preventDefault();
      showProblem(message);
      input.focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = "Diagnosing…";
    form.setAttribute("aria-busy", "true");
  });
})();
