// The destination form: show the example settings and the secret hint of the chosen kind, and
// offer the example as a starting point while the settings are still empty or an untouched example.
"use strict";
(() => {
  const kind = document.getElementById("destination-kind");
  const config = document.getElementById("destination-config");
  const hint = document.getElementById("secret-hint");
  if (!(kind instanceof HTMLSelectElement) || !(config instanceof HTMLTextAreaElement)) return;
  const hints = hint ? JSON.parse(hint.dataset.hints || "{}") : {};
  const exampleText = (name) => {
    const pre = document.getElementById(`example-${name}`);
    return pre ? pre.textContent : "";
  };
  let previous = kind.value;
  const show = () => {
    for (const example of document.querySelectorAll(".example[data-kind]")) {
      example.toggleAttribute("data-other", example.getAttribute("data-kind") !== kind.value);
    }
    if (hint) hint.textContent = `For ${kind.value}: ${hints[kind.value] || "password, token or signing key"}.`;
    const text = config.value.trim();
    if (text === "" || text === "{}" || text === exampleText(previous).trim()) config.value = exampleText(kind.value);
    previous = kind.value;
  };
  kind.addEventListener("change", show);
})();
