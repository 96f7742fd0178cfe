// The Matching page from the keyboard: a accept, r reject, s skip, d dismiss, j next pair,
// k previous pair (each clicks the button or link with that id; nothing when it is not there).
"use strict";
(() => {
  const keys = {
    a: "decide-accept",
    r: "decide-reject",
    s: "decide-skip",
    d: "decide-dismiss",
    j: "pair-next",
    k: "pair-previous",
  };
  let busy = false; // one decision per page: a key held or pressed twice must not send two
  document.addEventListener("submit", () => {
    busy = true;
  });
  document.addEventListener("keydown", (event) => {
    if (busy || event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey) return;
    const target = event.target;
    if (
      target instanceof HTMLElement &&
      (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName))
    ) {
      return; // typing in the search box
    }
    const id = keys[event.key];
    const element = id ? document.getElementById(id) : null;
    if (!element) return;
    event.preventDefault();
    if (element instanceof HTMLAnchorElement) busy = true;
    element.click();
  });
})();
