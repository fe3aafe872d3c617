// Page behaviour that needs script: the phone-width menu toggle, and focus on new content
// after an htmx swap of <main>. Loaded as a file, never inline (the CSP forbids inline code).
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  function setUpMenu() {
    var toggle = document.getElementById("menu-toggle");
    var nav = document.getElementById("main-nav");
    if (!toggle || !nav) return;
    nav.setAttribute("data-collapsed", "true");
    toggle.addEventListener("click", function () {
      var open = toggle.getAttribute("aria-expanded") === "true";
      toggle.setAttribute("aria-expanded", open ? "false" : "true");
      nav.setAttribute("data-collapsed", open ? "true" : "false");
    });
  }

  document.addEventListener("DOMContentLoaded", setUpMenu);
  // after a swap of the whole main content (a filter or a page link), move focus to it so a
  // screen reader starts reading the new content; fragments inside the page keep focus
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail && event.detail.target && event.detail.target.id === "main") {
      var heading = event.detail.target.querySelector("h1");
      (heading || event.detail.target).setAttribute("tabindex", "-1");
      (heading || event.detail.target).focus();
    }
  });
})();
