// The history page: once it has loaded (its thumbnails first), get the viewer ready while the
// patient reads, so that a click on "open in viewer" does not wait for its 17 MB of scripts to
// arrive, compile and start.
// - Every browser: fetch the viewer's start-up files into the HTTP cache at idle priority. They
//   are content-named and kept for good (mutualrec/http/viewer.py), so a later visit asks for
//   nothing.
// - Browsers with speculation rules (the page's Speculation-Rules header names
//   viewer-prerender.json): a second after that, mark the newest study's link, which those rules
//   prerender at once; a click on it then shows a viewer that has already started. Not at once:
//   a click within a moment of the prerender's start showed the viewer later than a plain
//   navigation would have (Chromium 156, by 0.2 to 0.4 s); a click within that second gets the
//   plain navigation. Other studies' links are prerendered when the pointer or a finger goes
//   down on them.
"use strict";
(function () {
  var files = (document.currentScript.dataset.files || "").split(" ").filter(Boolean);
  // About 17 MB, and a prerendered study's first images: not on a connection the patient asked
  // to spare (Data Saver) or a slow one, where it would cost them more than the wait it saves.
  // (Chromium also skips prerendering on its own under Data Saver, Battery Saver and low memory.)
  var connection = navigator.connection;
  if (connection && (connection.saveData || /(^|-)2g$/.test(connection.effectiveType || ""))) {
    return;
  }
  function prerenderNewest() {
    var newest = document.querySelector("li.study a.open-viewer");
    if (newest) {
      newest.classList.add("prerender-now");
    }
  }
  function ahead() {
    files.forEach(function (href) {
      var link = document.createElement("link");
      link.rel = "prefetch";
      link.href = href;
      document.head.appendChild(link);
    });
    window.setTimeout(prerenderNewest, 1000);
  }
  if (document.readyState === "complete") {
    ahead();
  } else {
    window.addEventListener("load", ahead, { once: true });
  }
})();
