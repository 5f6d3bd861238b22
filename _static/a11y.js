// Accessibility fixes in the browser, checked by axe-core in tests/test_site.py.
//
// Keyboard access to scrollable blocks: a code cell, an output or a wide table that scrolls can be
// reached with Tab (then scrolled with the arrow keys). Only blocks that actually scroll get a tab
// stop, and each gets an accessible name from its kind. Re-checked when the window is resized.
(function () {
  "use strict";
  var SELECTOR = "article.bd-article pre, article.bd-article div.output, article.bd-article div.cell_output, " +
                 "article.bd-article div.highlight, article.bd-article div.pst-scrollable-table-container";

  function scrolls(el) {
    var style = getComputedStyle(el);
    if (style.overflow === "visible" && style.overflowX === "visible" && style.overflowY === "visible") {
      return false;
    }
    return el.scrollWidth > el.clientWidth + 1 || el.scrollHeight > el.clientHeight + 1;
  }

  function label(el) {
    if (el.closest(".cell_output, .output")) { return "Output (scrollable)"; }
    if (el.closest("table, .pst-scrollable-table-container")) { return "Table (scrollable)"; }
    return "Code (scrollable)";
  }

  function addTabStops() {
    document.querySelectorAll(SELECTOR).forEach(function (el) {
      if (scrolls(el)) {
        if (!el.hasAttribute("tabindex")) {
          el.setAttribute("tabindex", "0");
          el.dataset.kdelibTabStop = "1";
        }
        if (!el.hasAttribute("aria-label") && !el.hasAttribute("aria-labelledby")) {
          el.setAttribute("role", "region");
          el.setAttribute("aria-label", label(el));
        }
      } else if (el.dataset.kdelibTabStop) {
        el.removeAttribute("tabindex");
        delete el.dataset.kdelibTabStop;
      }
    });
  }

  // The theme's and myst-nb's controls: an accessible name must contain the control's visible text.
  // - The search field shows "Search Ctrl+K" but is labelled "Search": let its text name it.
  // - The colour-mode button is labelled "Color mode"; its icons are decorative (Font Awesome turns
  //   each into an <svg role="img"> titled "Light", "Dark", ... which would count as its text).
  function fixThemeControls() {
    document.querySelectorAll(".search-button-field[aria-label]").forEach(function (button) {
      if (button.textContent.trim()) { button.removeAttribute("aria-label"); }
    });
    // Collapsed cells: myst-nb labels each <summary> "Toggle hidden content" around visible text
    // such as "Show code cell source"; the visible text is the better name.
    document.querySelectorAll("details > summary[aria-label]").forEach(function (summary) {
      if (summary.textContent.trim()) { summary.removeAttribute("aria-label"); }
    });
    document.querySelectorAll(".theme-switch-button .theme-switch").forEach(function (icon) {
      icon.removeAttribute("title");
      icon.removeAttribute("role");
      icon.removeAttribute("aria-labelledby");
      icon.setAttribute("aria-hidden", "true");
      var title = icon.querySelector("title");
      if (title) { title.remove(); }
    });
  }

  function run() {
    addTabStops();
    fixThemeControls();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", run);
  } else {
    run();
  }
  window.addEventListener("load", function () {
    run();
    // Font Awesome replaces the icons after load; fix each replacement too.
    document.querySelectorAll(".theme-switch-button").forEach(function (button) {
      new MutationObserver(fixThemeControls).observe(button, {childList: true, subtree: true});
    });
  });
  var timer = null;
  window.addEventListener("resize", function () {
    clearTimeout(timer);
    timer = setTimeout(addTabStops, 150);
  });
})();
