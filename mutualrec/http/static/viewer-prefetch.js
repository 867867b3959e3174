// The history page: once it has loaded (its thumbnails first), ask the browser to fetch the
// viewer's start-up files into its HTTP cache at idle priority, while the patient reads, so that
// a click on "open in viewer" finds them there. They are content-named and kept for good
// (mutualrec/http/viewer.py), so a later visit asks for nothing.
"use strict";
(function () {
  var files = (document.currentScript.dataset.files || "").split(" ").filter(Boolean);
  // About 17 MB: not on a connection the patient asked to spare (Data Saver) or a slow one,
  // where it would cost them more than the wait it saves.
  var connection = navigator.connection;
  if (connection && (connection.saveData || /(^|-)2g$/.test(connection.effectiveType || ""))) {
    return;
  }
  function prefetch() {
    files.forEach(function (href) {
      var link = document.createElement("link");
      link.rel = "prefetch";
      link.href = href;
      document.head.appendChild(link);
    });
  }
  if (document.readyState === "complete") {
    prefetch();
  } else {
    window.addEventListener("load", prefetch, { once: true });
  }
})();
