// The history page: once it has loaded (its thumbnails first), ask the browser to fetch the
// viewer's start-up files into its HTTP cache at idle priority, while the patient reads, so that
// a click on "open in viewer" finds them there: index.html's files and the chunks the viewer
// would otherwise fetch in waves after the click. The browser keeps them (content-named ones for
// good, the release's others a day: mutualrec/http/viewer.py), so a later visit asks for little.
"use strict";
(function () {
  var files = (document.currentScript.dataset.files || "").split(" ").filter(Boolean);
  // About 26 MB: not on a connection the patient asked to spare (Data Saver) or a slow one,
  // where it would cost them more than the wait it saves.
  var connection = navigator.connection;
  if (connection && (connection.saveData || /(^|-)2g$/.test(connection.effectiveType || ""))) {
    return;
  }
  // Once this browser has them all, later visits ask for none: a prefetch of a file already in
  // the cache still reads it back (26 MB), and a patient who clicks at once pays for that read
  // beside the viewer's start (about 0.3 s with a warm cache on the project's machine). The list
  // names a release's files, so a new release is fetched again.
  var KEY = "mutualrec.viewer-files-fetched";
  var wanted = files.join(" ");
  function stored() {
    try {
      return window.localStorage.getItem(KEY);
    } catch (e) {
      return null; // storage refused (a privacy setting): fetch ahead every time
    }
  }
  function remember() {
    try {
      window.localStorage.setItem(KEY, wanted);
    } catch (e) {
      // storage refused or full: the next visit fetches ahead again
    }
  }
  if (stored() === wanted) {
    return;
  }
  function prefetch() {
    var pending = files.length;
    files.forEach(function (href) {
      var link = document.createElement("link");
      link.rel = "prefetch";
      link.href = href;
      link.addEventListener("load", function () {
        pending -= 1;
        if (pending === 0) {
          remember();
        }
      });
      document.head.appendChild(link);
    });
  }
  if (document.readyState === "complete") {
    prefetch();
  } else {
    window.addEventListener("load", prefetch, { once: true });
  }
})();
