// The console's only script (served from this repository, nothing loaded from elsewhere):
// a confirmation before an action, and a page that refreshes itself while its task is under way.
"use strict";
document.addEventListener("submit", function (event) {
  var form = event.target;
  var question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
document.addEventListener("DOMContentLoaded", function () {
  var seconds = Number(document.body.getAttribute("data-refresh-seconds"));
  if (seconds > 0) {
    window.setTimeout(function () {
      // Not while the operator is typing a reason.
      var active = document.activeElement;
      if (!active || active.tagName !== "INPUT") {
        window.location.reload();
      }
    }, seconds * 1000);
  }
});
