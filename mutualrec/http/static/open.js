// /open#<token>: trade the token in the URL's fragment (never sent to any server) for a
// session cookie, then go where the server says the token leads. No token in any URL.
"use strict";
(function () {
  var status = document.getElementById("open-status");
  var token = decodeURIComponent(window.location.hash.replace(/^#/, ""));
  // Off the address bar and the history before anything else happens.
  window.history.replaceState(null, "", window.location.pathname);
  if (!token) {
    status.textContent = status.dataset.noToken;
    return;
  }
  var csrf = document.querySelector('meta[name="csrf-token"]').content;
  var body = new URLSearchParams({ credential: token, csrf: csrf });
  fetch("/session", {
    method: "POST",
    headers: { Accept: "application/json" },
    body: body,
    credentials: "same-origin",
    redirect: "error",
  })
    .then(function (reply) {
      return reply.json().then(function (answer) {
        if (!reply.ok) {
          throw new Error(answer.detail || String(reply.status));
        }
        // A local path the server chose from the credential, never from this URL.
        if (typeof answer.target !== "string" || answer.target.charAt(0) !== "/" ||
            answer.target.charAt(1) === "/") {
          throw new Error("unexpected answer");
        }
        window.location.replace(answer.target);
      });
    })
    .catch(function (error) {
      status.textContent = status.dataset.failed + error.message;
    });
})();
