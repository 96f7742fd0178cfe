// The export form: how many rows the export will have for the chosen purpose and channel, asked
// from the server (GET /ui/api/segments/{id}/reach) whenever either changes.
"use strict";
(() => {
  const form = document.getElementById("export-form");
  if (!form) return;
  const purpose = document.getElementById("export-purpose");
  const channel = document.getElementById("export-channel");
  const line = document.getElementById("export-reach");
  let pending = null;
  const show = (text, empty) => {
    line.textContent = text;
    line.classList.toggle("reach-empty", empty);
  };
  const ask = async () => {
    if (pending) pending.abort();
    if (!purpose.value) {
      show("Choose a purpose to see how many rows the export will have.", false);
      return;
    }
    pending = new AbortController();
    const query = new URLSearchParams({ purpose: purpose.value, channel: channel.value });
    show("Counting…", false);
    try {
      const response = await fetch(`${form.dataset.reachUrl}?${query}`, {
        signal: pending.signal,
        headers: { Accept: "application/json" },
      });
      const found = await response.json();
      if (!response.ok) {
        show(found.problem || "The reach could not be counted.", true);
        return;
      }
      const reason = found.empty_reason ? `. Nothing to export: ${found.empty_reason}` : "";
      show(found.summary + reason, Boolean(found.empty_reason));
    } catch (error) {
      if (error.name !== "AbortError") show("The reach could not be counted.", true);
    }
  };
  purpose.addEventListener("change", ask);
  channel.addEventListener("change", ask);
  if (purpose.value) ask(); // also when the browser restored the choice on "back"
})();
