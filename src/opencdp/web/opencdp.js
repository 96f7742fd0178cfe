/* opencdp.js: opencdp's first-party script (served by opencdp at /opencdp.js, no CDN).
 *
 *   <script src="https://cdp.example/opencdp.js" data-key="pk_..." data-write-key="wk_..."
 *           data-placements="auto" async></script>
 * or  opencdp.init({key: "pk_...", writeKey: "wk_...", host: "https://cdp.example"})
 *
 * 1. Decisions: elements marked data-opencdp-placement="home-hero" get the content opencdp decides
 *    for this visitor (POST /v1/decide with the public decide key); the element gets
 *    data-opencdp-variant and an `opencdp:decision` DOM event. An empty decision leaves it as is.
 * 2. Form analytics: forms marked data-opencdp-form="signup" (or every form with an id when
 *    data-forms="all") send Form Field Focused / Changed / Errored, Form Submitted and
 *    Form Abandoned -- field names and validation messages only, never what the visitor typed.
 *    After an error, placements marked data-opencdp-refresh="form-error" are decided again.
 */
(function () {
  "use strict";
  var VERSION = "1";
  var w = window;
  var d = document;
  var existing = w.opencdp && typeof w.opencdp === "object" ? w.opencdp : {};
  var api = existing;
  var config = { key: null, writeKey: null, host: "", placements: "auto", forms: "marked" };
  var started = false;
  var formState = {}; // form_id -> {touched, last, submitted, abandoned, lastError}
  var lastErrors = {}; // "form|field" -> the last error counted, see errored()

  // ---- identity: analytics.js's ids when present, else our own anonymous id ----
  function readStored(name) {
    var raw = null;
    try { raw = w.localStorage.getItem(name); } catch (e) { raw = null; }
    if (raw === null) {
      var m = d.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
      if (m) { try { raw = decodeURIComponent(m[1]); } catch (e) { raw = m[1]; } }
    }
    if (raw === null || raw === "") return null;
    try { raw = JSON.parse(raw); } catch (e) { /* stored without JSON quotes */ }
    return typeof raw === "string" && raw && raw !== "null" ? raw : null;
  }
  function uuid() {
    if (w.crypto && w.crypto.randomUUID) return w.crypto.randomUUID();
    return "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx".replace(/[xy]/g, function (c) {
      var r = (Math.random() * 16) | 0;
      return (c === "x" ? r : (r & 3) | 8).toString(16);
    });
  }
  function ownAnonymousId() {
    var id = readStored("opencdp_anonymous_id");
    if (!id) {
      id = uuid();
      try { w.localStorage.setItem("opencdp_anonymous_id", id); } catch (e) { /* private mode */ }
    }
    return id;
  }
  function identifiers() {
    return {
      anonymousId: readStored("ajs_anonymous_id") || ownAnonymousId(),
      userId: readStored("ajs_user_id")
    };
  }
  // With analytics.js on the page but its id not stored yet (it is still loading), wait for it
  // (at most 2 s): a decision and the visitor's page views must be one visitor.
  function identified() {
    var a = w.analytics;
    if (readStored("ajs_anonymous_id") || !a || typeof a.ready !== "function") {
      return Promise.resolve(identifiers());
    }
    return new Promise(function (resolve) {
      var done = function () { resolve(identifiers()); };
      try { a.ready(done); } catch (e) { done(); }
      setTimeout(done, 2000);
    });
  }

  // ---- live context ----
  function campaign() {
    var out = {};
    var names = { source: "utm_source", medium: "utm_medium", name: "utm_campaign", term: "utm_term", content: "utm_content" };
    var params = new URLSearchParams(w.location.search);
    for (var k in names) { var v = params.get(names[k]); if (v) out[k] = v; }
    return out;
  }
  function deviceType() {
    var width = (w.screen && w.screen.width) || w.innerWidth || 1024;
    return width < 768 ? "mobile" : width < 1024 ? "tablet" : "desktop";
  }
  function cart() {
    if (api.cart && typeof api.cart === "object") return api.cart;
    var el = d.querySelector("[data-opencdp-cart]");
    if (!el) return null;
    try { return JSON.parse(el.getAttribute("data-opencdp-cart")); } catch (e) { return null; }
  }
  function pageContext() {
    var l = w.location;
    return { url: l.href, path: l.pathname, referrer: d.referrer, title: d.title, search: l.search };
  }
  function context() {
    var tz = null;
    try { tz = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { tz = null; }
    var ctx = {
      page: pageContext(),
      campaign: campaign(),
      locale: navigator.language || null,
      timezone: tz,
      device: { type: deviceType() }
    };
    var c = cart();
    if (c) ctx.cart = c;
    return ctx;
  }

  // ---- decisions ----
  function placementElements(only) {
    var els = d.querySelectorAll("[data-opencdp-placement]");
    var out = [];
    for (var i = 0; i < els.length; i++) {
      if (!only || only(els[i])) out.push(els[i]);
    }
    return out;
  }
  function apply(el, placement, decision) {
    if (!decision || typeof decision !== "object" || !Object.keys(decision).length) return;
    var content = decision.content;
    if (content && typeof content.html === "string") el.innerHTML = content.html;
    else if (content && typeof content.text === "string") el.textContent = content.text;
    // a held-out visitor sees the default: the element says so rather than naming the variant
    if (decision.holdout) el.setAttribute("data-opencdp-variant", "holdout");
    else if (decision.variant != null) el.setAttribute("data-opencdp-variant", String(decision.variant));
    if (decision.experience != null) el.setAttribute("data-opencdp-experience", String(decision.experience));
    el.dispatchEvent(new CustomEvent("opencdp:decision", {
      bubbles: true, detail: { placement: placement, decision: decision }
    }));
  }
  function decide(placements) {
    var els = placementElements(placements ? function (el) {
      return placements.indexOf(el.getAttribute("data-opencdp-placement")) >= 0;
    } : null);
    var names = [];
    els.forEach(function (el) {
      var p = el.getAttribute("data-opencdp-placement");
      if (p && names.indexOf(p) < 0) names.push(p);
    });
    if (!names.length || !config.key) return Promise.resolve({});
    return identified().then(function (ids) {
      var body = { anonymousId: ids.anonymousId, userId: ids.userId, placements: names, context: context() };
      return fetch(config.host + "/v1/decide", {
        method: "POST",
        headers: { "Authorization": "Bearer " + config.key, "Content-Type": "application/json" },
        body: JSON.stringify(body)
      });
    }).then(function (r) { return r.ok ? r.json() : { decisions: {} }; })
      .then(function (res) {
        var decisions = (res && res.decisions) || {};
        els.forEach(function (el) {
          var p = el.getAttribute("data-opencdp-placement");
          apply(el, p, decisions[p]);
        });
        return decisions;
      })
      .catch(function () { return {}; });
  }

  // ---- tracking: through analytics.js when it is on the page, else /v1/t with the write key ----
  function track(event, properties) {
    var a = w.analytics;
    if (a && typeof a.track === "function" && !config.writeKey) {
      try { return Promise.resolve(a.track(event, properties)); } catch (e) { return Promise.resolve(); }
    }
    if (!config.writeKey) return Promise.resolve();
    var ids = identifiers();
    var tz = null;
    try { tz = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { tz = null; }
    var message = {
      writeKey: config.writeKey, // in the body, sent as text/plain: no CORS preflight, works on pagehide
      type: "track",
      event: event,
      properties: properties,
      anonymousId: ids.anonymousId,
      messageId: "ocdp-" + uuid(),
      timestamp: new Date().toISOString(),
      context: {
        library: { name: "opencdp.js", version: VERSION },
        page: pageContext(), locale: navigator.language || null, timezone: tz,
        userAgent: navigator.userAgent
      }
    };
    if (ids.userId) message.userId = ids.userId;
    try {
      return fetch(config.host + "/v1/t", {
        method: "POST", keepalive: true, headers: { "Content-Type": "text/plain" },
        body: JSON.stringify(message)
      }).catch(function () { return null; });
    } catch (e) { return Promise.resolve(); }
  }

  // ---- form analytics ----
  function formOf(el) {
    var form = el && (el.form || (el.closest && el.closest("form")));
    if (!form) return null;
    var id = form.getAttribute("data-opencdp-form");
    if (!id && config.forms === "all") id = form.id || null;
    return id ? { form: form, id: id } : null;
  }
  function fieldName(el) {
    if (!el || !el.getAttribute) return null;
    var type = (el.getAttribute("type") || "").toLowerCase();
    if (["hidden", "submit", "button", "reset", "image"].indexOf(type) >= 0) return null;
    if (["INPUT", "SELECT", "TEXTAREA"].indexOf(el.tagName) < 0) return null;
    return el.getAttribute("name") || el.id || null;
  }
  function state(formId) {
    return formState[formId] || (formState[formId] = { touched: false, last: null, submitted: false, abandoned: false, lastError: 0 });
  }
  function fieldEvent(event, el) {
    var f = formOf(el);
    var name = fieldName(el);
    if (!f || !name) return null;
    var s = state(f.id);
    s.touched = true;
    s.last = name;
    return track(event, { form_id: f.id, field: name });
  }
  // One error is counted once: a field the browser flags (`invalid`) and the page marks too
  // (aria-invalid, a data-opencdp-error text) within half a second is one error, and a message the
  // page keeps showing counts again only after the visitor changed the field.
  function errored(formId, field, message, source) {
    var key = formId + "|" + field;
    var now = Date.now();
    var prev = lastErrors[key];
    if (prev && prev.source !== source && now - prev.at < 500) return;
    if (prev && source === "page" && prev.source === "page" && !prev.changed && prev.message === message) return;
    lastErrors[key] = { at: now, source: source, message: message, changed: false };
    var s = state(formId);
    s.touched = true;
    s.last = field;
    s.lastError = now;
    var sent = track("Form Field Errored", { form_id: formId, field: field, message: message || "" });
    var refresh = placementElements(function (el) {
      return (el.getAttribute("data-opencdp-refresh") || "").split(/\s+/).indexOf("form-error") >= 0;
    }).map(function (el) { return el.getAttribute("data-opencdp-placement"); });
    if (refresh.length) {
      // once the error is stored (the decision reads it), but never waiting more than 2 s
      var stored = Promise.race([Promise.resolve(sent), new Promise(function (r) { setTimeout(r, 2000); })]);
      stored.then(function () { return decide(refresh); });
    }
  }
  function messageFor(el) {
    var ids = ((el.getAttribute("aria-errormessage") || "") + " " + (el.getAttribute("aria-describedby") || "")).trim();
    var parts = ids ? ids.split(/\s+/) : [];
    for (var i = 0; i < parts.length; i++) {
      var m = d.getElementById(parts[i]);
      if (m && m.textContent.trim()) return m.textContent.trim();
    }
    var f = formOf(el);
    var name = String(fieldName(el));
    var shown = f && f.form.querySelector('[data-opencdp-error="' + (w.CSS && CSS.escape ? CSS.escape(name) : name) + '"]');
    return (shown && shown.textContent.trim()) || el.validationMessage || "";
  }
  function watchForm(form) {
    if (form.__opencdpWatched || !w.MutationObserver) return;
    form.__opencdpWatched = true;
    new MutationObserver(function (mutations) {
      mutations.forEach(function (m) {
        var target = m.target.nodeType === 1 ? m.target : m.target.parentElement;
        if (!target) return;
        var f = formOf(target);
        if (!f) return;
        if (m.type === "attributes" && m.attributeName === "aria-invalid") {
          var name = fieldName(target);
          if (name && target.getAttribute("aria-invalid") === "true") errored(f.id, name, messageFor(target), "page");
          return;
        }
        var shown = target.closest && target.closest("[data-opencdp-error]");
        if (shown && shown.textContent.trim()) {
          errored(f.id, shown.getAttribute("data-opencdp-error"), shown.textContent.trim(), "page");
        }
      });
    }).observe(form, { attributes: true, attributeFilter: ["aria-invalid"], subtree: true, childList: true, characterData: true });
  }
  function watchForms() {
    var forms = d.querySelectorAll(config.forms === "all" ? "form[data-opencdp-form], form[id]" : "form[data-opencdp-form]");
    for (var i = 0; i < forms.length; i++) watchForm(forms[i]);
  }
  function abandon() {
    for (var id in formState) {
      var s = formState[id];
      if (s.touched && !s.submitted && !s.abandoned) {
        s.abandoned = true;
        track("Form Abandoned", { form_id: id, field: s.last });
      }
    }
  }
  function listen() {
    d.addEventListener("focusin", function (e) { fieldEvent("Form Field Focused", e.target); }, true);
    d.addEventListener("change", function (e) {
      var f = formOf(e.target);
      var prev = f && lastErrors[f.id + "|" + fieldName(e.target)];
      if (prev) prev.changed = true;
      fieldEvent("Form Field Changed", e.target);
    }, true);
    d.addEventListener("invalid", function (e) {
      var f = formOf(e.target);
      var name = fieldName(e.target);
      if (f && name) errored(f.id, name, e.target.validationMessage || messageFor(e.target), "browser");
    }, true);
    // capture: before the page's own submit handlers, whose validation may show an error (then
    // this attempt is no submit); the check runs after them all
    d.addEventListener("submit", function (e) {
      var f = formOf(e.target);
      if (!f) return;
      var s = state(f.id);
      var at = Date.now();
      setTimeout(function () {
        if (s.lastError >= at) return;
        s.submitted = true;
        track("Form Submitted", { form_id: f.id });
      }, 0);
    }, true);
    w.addEventListener("pagehide", abandon);
    d.addEventListener("visibilitychange", function () { if (d.visibilityState === "hidden") abandon(); });
  }

  function init(options) {
    options = options || {};
    for (var k in options) if (options[k] !== undefined) config[k] = options[k];
    config.host = String(config.host || "").replace(/\/+$/, "");
    if (started) return api;
    started = true;
    var go = function () {
      listen();
      watchForms();
      if (config.placements === "auto" && config.key) decide();
    };
    if (d.readyState === "loading") d.addEventListener("DOMContentLoaded", go);
    else go();
    return api;
  }

  api.init = init;
  api.decide = decide;
  api.track = track;
  api.watchForms = watchForms;
  api.identifiers = identifiers;
  api.context = context;
  api.version = VERSION;
  w.opencdp = api;

  var script = d.currentScript;
  if (script && (script.getAttribute("data-key") || script.getAttribute("data-write-key"))) {
    var host = "";
    try { host = new URL(script.src, w.location.href).origin; } catch (e) { host = ""; }
    init({
      key: script.getAttribute("data-key"),
      writeKey: script.getAttribute("data-write-key"),
      host: script.getAttribute("data-host") || host,
      placements: script.getAttribute("data-placements") || "auto",
      forms: script.getAttribute("data-forms") || "marked"
    });
  }
})();
