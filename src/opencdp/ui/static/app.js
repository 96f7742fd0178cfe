// Every page: ask before destructive forms (inline handlers are forbidden by the CSP).
"use strict";
document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form instanceof HTMLFormElement ? form.dataset.confirm : undefined;
  if (question && !window.confirm(question)) event.preventDefault();
});
document.addEventListener("click", (event) => {
  const link = event.target instanceof Element ? event.target.closest("a[data-back]") : null;
  if (link && window.history.length > 1) {
    event.preventDefault();
    window.history.back();
  }
});
// Dates and times are shown in the browser's time zone: tell the server which one it is.
(() => {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  const current = document.cookie.split("; ").find((c) => c.startsWith("opencdp_tz="));
  if (zone && current !== `opencdp_tz=${encodeURIComponent(zone)}`) {
    document.cookie = `opencdp_tz=${encodeURIComponent(zone)}; path=/; max-age=31536000; SameSite=Lax`;
  }
})();
// A nav too wide for the bar scrolls sideways: keep the current page's link in view.
document.querySelector(".mainnav a.active")?.scrollIntoView({ block: "nearest", inline: "nearest" });
