// Shared by the teach pages: the webcam preview and JPEG frames grabbed from it.
(function () {
  "use strict";
  var FRAME_WIDTH = 224;

  // Starts the camera in `video`; calls back with true once frames can be grabbed.
  function start(video, status, done) {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      status.textContent = "This browser has no camera access: add image files instead.";
      done(false);
      return;
    }
    navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 }, audio: false })
      .then(function (stream) {
        video.srcObject = stream;
        return video.play();
      })
      .then(function () {
        status.textContent = "Camera on.";
        done(true);
      }, function (error) {
        status.textContent = "No camera (" + (error && error.name || "refused") + "): add image files instead.";
        done(false);
      });
  }

  // Grabs the current frame as a JPEG Blob, scaled to FRAME_WIDTH pixels wide.
  function grab(video, canvas, quality, done) {
    var w = video.videoWidth, h = video.videoHeight;
    if (!w || !h) { done(null); return; }
    canvas.width = FRAME_WIDTH;
    canvas.height = Math.round(FRAME_WIDTH * h / w);
    canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
    canvas.toBlob(function (blob) { done(blob); }, "image/jpeg", quality || 0.85);
  }

  function socketUrl(path) {
    return (window.location.protocol === "https:" ? "wss://" : "ws://") + window.location.host + path;
  }

  window.teachCamera = { start: start, grab: grab, socketUrl: socketUrl };
})();
