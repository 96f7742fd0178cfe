// The segment builder: edits a criteria document (docs/segments.md) as a tree of groups and
// conditions, and asks the server for a live count as it changes. Plain DOM, no library; every
// name and value is set with textContent/value, never parsed as HTML.
"use strict";
(() => {
  const data = JSON.parse(document.getElementById("builder-data").textContent);
  const catalog = data.catalog;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const mount = document.getElementById("builder");
  const form = document.getElementById("segment-form");
  const field = document.getElementById("criteria-field");
  const live = {
    box: document.querySelector(".live"),
    count: document.getElementById("live-count"),
    status: document.getElementById("live-status"),
    problems: document.getElementById("live-problems"),
    sample: document.getElementById("live-sample"),
  };
  const VALUE_OPS = [
    ["eq", "is"], ["neq", "is not"], ["gt", ">"], ["gte", "≥"], ["lt", "<"], ["lte", "≤"],
    ["in", "is one of"], ["not_in", "is none of"], ["contains", "contains"],
    ["starts_with", "starts with"], ["exists", "is set"], ["not_exists", "is not set"],
    ["on", "is on the day"], ["before", "is before the day"], ["after", "is after the day"],
    ["on_or_before", "is on or before"], ["on_or_after", "is on or after"],
    ["between", "is between the days"], ["in_month", "is in the month"],
  ];
  // Calendar days (docs/segments.md#calendar-dates): "between" includes both days.
  const VALUE_KINDS = { trait: "Trait", computed: "Computed", predicted: "Predicted" };
  const CALENDAR = new Set(["on", "after", "on_or_after", "before", "on_or_before", "between", "in_month"]);
  const WHEN = [
    ["any", "at any time"], ["last", "in the last … days"], ["on", "on the day"], ["between", "between the days"],
    ["in_month", "in the month"], ["before", "before the day"], ["after", "after the day"],
    ["on_or_before", "on or before the day"], ["on_or_after", "on or after the day"], ["range", "from … until …"],
  ];
  const TIME_OPS = [
    ["within_days", "in the last … days"], ["before_days", "more than … days ago"], ["on", "on the day"],
    ["between", "between the days"], ["in_month", "in the month"], ["before", "before the day"],
    ["after", "after the day"], ["on_or_before", "on or before the day"], ["on_or_after", "on or after the day"],
  ];
  const ZONES = (() => {
    try { return Intl.supportedValuesOf("timeZone"); } catch (error) { return ["Europe/Berlin", "Europe/London", "America/New_York"]; }
  })();
  const NUMERIC = new Set(["gt", "gte", "lt", "lte"]);
  const TEXTUAL = new Set(["contains", "starts_with"]);
  const MEASURES = [
    ["gte", "at least"], ["lte", "at most"], ["eq", "exactly"], ["gt", "more than"], ["lt", "fewer than"],
    ["first", "for the first time"], ["last", "for the last time"],
  ];
  let uid = 0;

  // --- Model <-> criteria document ------------------------------------------------------------
  const kindOf = (v) => (typeof v === "boolean" ? "boolean" : typeof v === "number" ? "number" : "text");
  function valueFrom(doc) {
    const v = doc.value;
    if (Array.isArray(v)) return { value: v.join(", "), vtype: v.length ? kindOf(v[0]) : "text" };
    if (v === undefined || v === null) return { value: "", vtype: "text" };
    return { value: String(v), vtype: kindOf(v) };
  }
  // A calendar form's value (a day, two days, a month) into the node's date inputs, and back.
  function calendarFrom(op, value, tz) {
    const out = { day: "", day2: "", month: "", tz: tz || "" };
    if (op === "between" && Array.isArray(value)) [out.day, out.day2] = value;
    else if (op === "in_month") out.month = value || "";
    else out.day = value || "";
    return out;
  }
  function calendarValue(node, op) {
    if (op === "between") return [node.day, node.day2];
    return op === "in_month" ? node.month : node.day;
  }
  function test(doc) {
    if (CALENDAR.has(doc.op)) return { op: doc.op, value: "", vtype: "text", ...calendarFrom(doc.op, doc.value, doc.tz) };
    return { op: doc.op || "eq", ...valueFrom(doc) };
  }
  function fromDoc(doc) {
    if (doc.and || doc.or) {
      return { kind: "group", mode: doc.and ? "and" : "or", children: (doc.and || doc.or).map(fromDoc) };
    }
    if (doc.not) {
      const inner = doc.not;
      if (inner.segment) return { kind: "segment", name: inner.segment, negate: true };
      if (inner.or) return { kind: "group", mode: "none", children: inner.or.map(fromDoc) };
      return { kind: "group", mode: "none", children: [fromDoc(inner)] };
    }
    if (doc.trait !== undefined) return { kind: "trait", name: doc.trait, ...test(doc) };
    if (doc.computed !== undefined) return { kind: "computed", name: doc.computed, ...test(doc) };
    if (doc.predicted !== undefined) return { kind: "predicted", name: doc.predicted, ...test(doc) };
    if (doc.segment !== undefined) return { kind: "segment", name: doc.segment, negate: false };
    const time = doc.first_occurred || doc.last_occurred;
    const keys = [...CALENDAR].filter((k) => doc[k] !== undefined);
    let when = doc.within_days ? "last" : keys.length > 1 ? "range" : keys[0] || "any";
    let dates = calendarFrom(when, doc[when], doc.tz);
    const lowerOp = keys.find((k) => k === "after" || k === "on_or_after") || "on_or_after";
    const upperOp = keys.find((k) => k === "before" || k === "on_or_before") || "on_or_before";
    if (when === "range") dates = { ...calendarFrom("on", doc[lowerOp], doc.tz), day2: doc[upperOp] || "" };
    if (time && CALENDAR.has(time.op)) dates = calendarFrom(time.op, time.value, time.tz);
    return {
      kind: "event",
      name: doc.event || "",
      etype: doc.type || "",
      measure: doc.first_occurred ? "first" : doc.last_occurred ? "last" : (doc.count && doc.count.op) || "gte",
      times: doc.count ? doc.count.value : 1,
      when,
      within: doc.within_days || 30,
      lowerOp,
      upperOp,
      ...dates,
      timeOp: time ? time.op : "within_days",
      timeDays: time && !CALENDAR.has(time.op) ? time.value : 30,
      where: (doc.where || []).map((w) => ({ name: w.property, ...test(w) })),
    };
  }
  function typed(node) {
    const raw = String(node.value).trim();
    const asNumber = (s) => (s !== "" && !Number.isNaN(Number(s)) ? Number(s) : s);
    if (node.op === "in" || node.op === "not_in") {
      const parts = raw.split(",").map((s) => s.trim()).filter((s) => s !== "");
      return node.vtype === "number" ? parts.map(asNumber) : parts;
    }
    if (NUMERIC.has(node.op) || node.vtype === "number") return asNumber(raw);
    if (node.vtype === "boolean") return raw === "true";
    return raw;
  }
  function valueDoc(node) {
    const out = { op: node.op };
    if (CALENDAR.has(node.op)) {
      out.value = calendarValue(node, node.op);
      if (node.tz) out.tz = node.tz;
    } else if (node.op !== "exists" && node.op !== "not_exists") out.value = typed(node);
    return out;
  }
  function toDoc(node) {
    node.lastDoc = docOf(node);
    return node.lastDoc;
  }
  function docOf(node) {
    if (node.kind === "group") {
      const kids = node.children.map(toDoc).filter((d) => d !== null);
      if (!kids.length) return null;
      if (node.mode === "none") return kids.length === 1 ? { not: kids[0] } : { not: { or: kids } };
      return { [node.mode]: kids };
    }
    if (node.kind === "trait" || node.kind === "computed" || node.kind === "predicted") {
      return node.name ? { [node.kind]: node.name, ...valueDoc(node) } : null;
    }
    if (node.kind === "segment") {
      if (!node.name) return null;
      return node.negate ? { not: { segment: node.name } } : { segment: node.name };
    }
    if (!node.name && !node.etype) return null;
    const doc = {};
    if (node.name) doc.event = node.name;
    if (node.etype) doc.type = node.etype;
    const where = node.where.filter((w) => w.name).map((w) => ({ property: w.name, ...valueDoc(w) }));
    if (where.length) doc.where = where;
    const days = (v) => (String(v).trim() === "" ? NaN : Number(v));
    if (node.measure === "first" || node.measure === "last") {
      const time = CALENDAR.has(node.timeOp)
        ? { op: node.timeOp, value: calendarValue(node, node.timeOp), ...(node.tz ? { tz: node.tz } : {}) }
        : { op: node.timeOp, value: days(node.timeDays) };
      doc[`${node.measure}_occurred`] = time;
    } else {
      const times = days(node.times);
      if (node.measure !== "gte" || times !== 1) doc.count = { op: node.measure, value: times };
      if (node.when === "last") doc.within_days = days(node.within);
      if (node.when === "range") {
        doc[node.lowerOp] = node.day;
        doc[node.upperOp] = node.day2;
      } else if (CALENDAR.has(node.when)) doc[node.when] = calendarValue(node, node.when);
      if ((node.when === "range" || CALENDAR.has(node.when)) && node.tz) doc.tz = node.tz;
    }
    return doc;
  }

  // Where each condition (and property filter) sits in the document, as the server's error paths
  // say it: "and.0.not.or.1", "and.2.where.0".
  const join = (path, more) => (path ? `${path}.${more}` : more);
  function assignPaths(node, path) {
    node.path = path;
    if (node.kind === "group") {
      for (const child of node.children) child.path = undefined;
      const kids = node.children.filter((c) => c.lastDoc !== null && c.lastDoc !== undefined);
      const single = node.mode === "none" && kids.length === 1;
      const base = node.mode === "none" ? join(path, single ? "not" : "not.or") : join(path, node.mode);
      kids.forEach((c, i) => assignPaths(c, single ? base : `${base}.${i}`));
    } else if (node.kind === "segment" && node.negate) node.path = join(path, "not");
    else if (node.kind === "event") {
      for (const w of node.where) w.path = undefined;
      node.where.filter((w) => w.name).forEach((w, i) => { w.path = join(path, `where.${i}`); });
    }
  }

  // --- Small DOM helpers ----------------------------------------------------------------------
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }
  function select(label, options, current, onchange) {
    const box = el("select", { "aria-label": label, onchange: (e) => onchange(e.target.value) });
    let found = false;
    for (const option of options) {
      if (option.group) {
        const group = el("optgroup", { label: option.group });
        for (const [value, text] of option.items) {
          group.append(el("option", { value, text }));
          found = found || value === current;
        }
        box.append(group);
      } else {
        box.append(el("option", { value: option[0], text: option[1] }));
        found = found || option[0] === current;
      }
    }
    if (!found && current) box.append(el("option", { value: current, text: current }));
    box.value = current;
    return box;
  }
  const named = (list) => [["", "choose…"], ...list.map((x) => [x.name, x.name])];
  const removeButton = (onclick) =>
    el("button", { type: "button", class: "icon", title: "Remove", "aria-label": "Remove", text: "✕", onclick });

  // --- Rendering ------------------------------------------------------------------------------
  function valueEditor(node, names) {
    const listId = `values-${++uid}`;
    const info = names.find((x) => x.name === node.name);
    const datalist = el("datalist", { id: listId });
    for (const example of (info && info.examples) || []) datalist.append(el("option", { value: example }));
    const input = el("input", {
      class: "value", "aria-label": "Value", list: listId, placeholder: "value",
      oninput: (e) => { node.value = e.target.value; changed(); },
    });
    input.value = node.value;
    const vtype = select("Value type", [["text", "text"], ["number", "number"], ["boolean", "yes/no"]],
      node.vtype, (v) => { node.vtype = v; changed(); });
    const op = select("Operator", VALUE_OPS, node.op, (v) => { node.op = v; render(); });
    node.inputs = { op, value: input };
    if (CALENDAR.has(node.op)) return [op, ...calendarInputs(node, node.op, "value")];
    function sync() {
      const noValue = node.op === "exists" || node.op === "not_exists";
      input.hidden = noValue;
      vtype.hidden = noValue || NUMERIC.has(node.op) || TEXTUAL.has(node.op);
      input.placeholder = node.op === "in" || node.op === "not_in" ? "a, b, c" : "value";
    }
    sync();
    return [op, input, datalist, vtype];
  }

  // Date inputs for one calendar form, registered under the document keys they fill (`key`,
  // `key.0`, `key.1`), and the time zone the days are in.
  function dateInput(node, prop, label, type = "date") {
    const input = el("input", { type, "aria-label": label, class: "date",
      oninput: (e) => { node[prop] = e.target.value; changed(); } });
    if (type === "month") input.placeholder = "YYYY-MM";
    input.value = node[prop];
    return input;
  }
  function zoneSelect(node) {
    const zones = [["", "UTC"], ...ZONES.filter((z) => z !== "UTC").map((z) => [z, z])];
    return select("Time zone", zones, node.tz, (v) => { node.tz = v; changed(); });
  }
  function calendarInputs(node, op, key, range = false) {
    const zone = zoneSelect(node);
    node.inputs.tz = zone;
    const tzKey = key === "value" ? "tz" : key.replace(/[^.]+$/, "tz");
    node.inputs[tzKey] = zone;
    if (range) {
      const lower = dateInput(node, "day", "From day");
      const upper = dateInput(node, "day2", "Until day");
      const lowerOp = select("From", [["on_or_after", "from (incl.)"], ["after", "after"]], node.lowerOp,
        (v) => { node.lowerOp = v; changed(); });
      const upperOp = select("Until", [["on_or_before", "until (incl.)"], ["before", "before"]], node.upperOp,
        (v) => { node.upperOp = v; changed(); });
      Object.assign(node.inputs, { [node.lowerOp]: lower, [node.upperOp]: upper });
      return [lowerOp, lower, upperOp, upper, el("span", { class: "muted", text: "in" }), zone];
    }
    if (op === "between") {
      const first = dateInput(node, "day", "First day");
      const last = dateInput(node, "day2", "Last day");
      Object.assign(node.inputs, { [key]: first, [`${key}.0`]: first, [`${key}.1`]: last });
      return [first, el("span", { text: "and" }), last, el("span", { class: "muted", text: "(both included) in" }), zone];
    }
    const input = op === "in_month" ? dateInput(node, "month", "Month", "month") : dateInput(node, "day", "Day");
    node.inputs[key] = input;
    return [input, el("span", { class: "muted", text: "in" }), zone];
  }

  function valueCondition(node, parent, label, names) {
    const pick = select(`${label} name`, named(names), node.name, (v) => {
      node.name = v;
      const info = names.find((x) => x.name === v);
      if (info && ["text", "number", "boolean"].includes(info.kind)) node.vtype = info.kind;
      render();
    });
    const editor = valueEditor(node, names);
    node.inputs[node.kind] = pick;
    node.box = el("div", { class: "cond" }, el("span", { class: "kind", text: label }), pick,
      ...editor, el("span", { class: "grow" }), removeButton(() => removeFrom(parent, node)));
    return node.box;
  }

  // A name matches events of every type with that name (a page and a screen called "Kids" alike);
  // "any page view" and "any screen view" match by type alone.
  function eventOptions(current, node) {
    const named = (tracked) => catalog.events.filter((e) => (e.type === "track") === tracked)
      .map((e) => [JSON.stringify([e.name, ""]), e.name]);
    const options = [
      ["", "choose…"],
      { group: "Events", items: named(true) },
      { group: "Pages and screens", items: [[JSON.stringify(["", "page"]), "any page view"],
        [JSON.stringify(["", "screen"]), "any screen view"], ...named(false)] },
    ];
    const known = options.some((o) => (o.group ? o.items.some(([v]) => v === current) : o[0] === current));
    if (current && !known) options.push([current, node.etype ? `${node.name || "any"} (${node.etype} only)` : node.name]);
    return options;
  }

  function eventCondition(node, parent) {
    const current = node.name || node.etype ? JSON.stringify([node.name, node.etype]) : "";
    const pick = select("Event", eventOptions(current, node), current, (v) => {
      [node.name, node.etype] = v ? JSON.parse(v) : ["", ""];
      render();
    });
    const measure = select("How often", MEASURES, node.measure, (v) => { node.measure = v; render(); });
    const number = (label, key, placeholder) => {
      const input = el("input", { type: "number", min: "0", "aria-label": label, placeholder,
        oninput: (e) => { node[key] = e.target.value; changed(); } });
      input.value = node[key];
      return input;
    };
    const parts = [el("span", { class: "kind", text: "Event" }), pick, measure];
    node.inputs = { event: pick, type: pick };
    if (node.measure === "first" || node.measure === "last") {
      const key = `${node.measure}_occurred`;
      const when = select("When", TIME_OPS, node.timeOp, (v) => { node.timeOp = v; render(); });
      node.inputs[`${key}.op`] = when;
      parts.push(when);
      if (CALENDAR.has(node.timeOp)) parts.push(...calendarInputs(node, node.timeOp, `${key}.value`));
      else {
        const days = number("Days", "timeDays", "days");
        node.inputs[`${key}.value`] = days;
        parts.push(days, el("span", { text: node.timeOp === "before_days" ? "days ago" : "days" }));
      }
    } else {
      const times = number("Times", "times", "1");
      const when = select("When", WHEN, node.when, (v) => { node.when = v; render(); });
      Object.assign(node.inputs, { "count.value": times, "count.op": measure });
      parts.push(times, el("span", { text: "times" }), when);
      if (node.when === "last") {
        const within = number("Within days", "within", "days");
        node.inputs.within_days = within;
        parts.push(within, el("span", { text: "days" }));
      } else if (node.when === "range") parts.push(...calendarInputs(node, "range", "range", true));
      else if (CALENDAR.has(node.when)) parts.push(...calendarInputs(node, node.when, node.when));
    }
    parts.push(el("span", { class: "grow" }), removeButton(() => removeFrom(parent, node)));
    const props = (catalog.properties[node.name] || []);
    const where = el("div", { class: "where" });
    node.where.forEach((w) => {
      const pickProp = select("Property", named(props), w.name, (v) => {
        w.name = v;
        const info = props.find((x) => x.name === v);
        if (info && ["text", "number", "boolean"].includes(info.kind)) w.vtype = info.kind;
        render();
      });
      const editor = valueEditor(w, props);
      w.inputs.property = pickProp;
      w.box = el("div", { class: "row" }, el("span", { class: "muted", text: "where" }), pickProp,
        ...editor, removeButton(() => { node.where.splice(node.where.indexOf(w), 1); render(); }));
      where.append(w.box);
    });
    where.append(el("div", {}, el("button", { type: "button", class: "small", text: "+ property filter",
      onclick: () => { node.where.push({ name: "", op: "eq", value: "", vtype: "text" }); render(); } })));
    node.box = el("div", { class: "cond event" }, ...parts, where);
    return node.box;
  }

  function segmentCondition(node, parent) {
    const pick = select("Segment", [["", "choose…"], ...catalog.segments.map((s) => [s, s])], node.name,
      (v) => { node.name = v; changed(); });
    node.inputs = { segment: pick };
    node.box = el("div", { class: "cond" }, el("span", { class: "kind", text: "Segment" }),
      select("Membership", [["in", "is in"], ["out", "is not in"]], node.negate ? "out" : "in",
        (v) => { node.negate = v === "out"; changed(); }),
      pick, el("span", { class: "grow" }), removeButton(() => removeFrom(parent, node)));
    return node.box;
  }

  function blank(kind) {
    if (kind === "group") return { kind, mode: "or", children: [] };
    if (kind === "event") return fromDoc({ event: "" });
    if (kind === "segment") return { kind, name: "", negate: false };
    return { kind, name: "", op: "eq", value: "", vtype: "text" };
  }

  function group(node, parent, depth) {
    const head = el("div", { class: "group-head" },
      el("span", { text: depth ? "Match" : "Profiles matching" }),
      select("Group mode", [["and", "all of"], ["or", "any of"], ["none", "none of"]], node.mode,
        (v) => { node.mode = v; changed(); }),
      el("span", { class: "grow", text: "these conditions" }),
      parent ? removeButton(() => removeFrom(parent, node)) : null);
    const body = el("div", { class: "group-body" });
    for (const child of node.children) {
      if (child.kind === "group") body.append(group(child, node, depth + 1));
      else if (child.kind === "event") body.append(eventCondition(child, node));
      else if (child.kind === "segment") body.append(segmentCondition(child, node));
      else body.append(valueCondition(child, node, VALUE_KINDS[child.kind], catalog[child.kind === "trait" ? "traits" : child.kind] || []));
    }
    if (!node.children.length) body.append(el("p", { class: "muted", text: "No conditions yet." }));
    const adders = el("div", { class: "adders" });
    const kinds = [["trait", "+ Trait"], ["computed", "+ Computed trait"], ["predicted", "+ Predicted trait"],
      ["event", "+ Event"], ["segment", "+ Segment"]];
    if (depth < 4) kinds.push(["group", "+ Group"]);
    for (const [kind, text] of kinds) {
      adders.append(el("button", { type: "button", text, onclick: () => { node.children.push(blank(kind)); render(); } }));
    }
    return el("div", { class: "group" }, head, body, adders);
  }

  function removeFrom(parent, node) {
    parent.children.splice(parent.children.indexOf(node), 1);
    render();
  }

  // --- Live count -----------------------------------------------------------------------------
  let timer = null;
  let controller = null;
  let sequence = 0;
  function changed() {
    clearTimeout(timer);
    timer = setTimeout(preview, 350);
  }
  function render() {
    mount.replaceChildren(group(tree, null, 0));
    changed();
  }
  // Each problem in words beside the input it concerns (found by its path in the document);
  // those that belong to no input are listed under the count.
  function conditions(node, out = []) {
    if (node.kind === "group") node.children.forEach((c) => conditions(c, out));
    else if (node.path !== undefined && node.box) {
      out.push(node);
      if (node.kind === "event") node.where.filter((w) => w.path !== undefined && w.box).forEach((w) => out.push(w));
    }
    return out;
  }
  function placeIssue(issue) {
    const owners = conditions(tree).filter((n) => n.path === "" || issue.path === n.path || issue.path.startsWith(`${n.path}.`));
    if (!owners.length) return false;
    const owner = owners.reduce((a, b) => (b.path.length > a.path.length ? b : a));
    let rest = issue.path.slice(owner.path.length).replace(/^\./, "");
    let input = null;
    while (!input) {
      input = (owner.inputs || {})[rest] || null;
      if (input || !rest) break;
      rest = rest.includes(".") ? rest.slice(0, rest.lastIndexOf(".")) : "";
    }
    const note = el("span", { class: "field-error", id: `problem-${++uid}`, text: issue.message });
    if (input && !input.hidden) {
      input.setAttribute("aria-invalid", "true");
      input.setAttribute("aria-describedby", note.id);
      input.after(note);
    } else owner.box.append(note);
    return true;
  }
  function clearIssues() {
    for (const note of mount.querySelectorAll(".field-error")) note.remove();
    for (const input of mount.querySelectorAll("[aria-invalid]")) {
      input.removeAttribute("aria-invalid");
      input.removeAttribute("aria-describedby");
    }
  }
  function show(result) {
    live.box.classList.remove("busy");
    clearIssues();
    const issues = result.issues || (result.problems || []).map((message) => ({ path: null, message }));
    const unplaced = issues.filter((issue) => issue.path === null || !placeIssue(issue)).map((i) => i.message);
    live.problems.replaceChildren(...unplaced.map((p) => el("li", { text: p })));
    if (result.count === null || result.count === undefined) {
      live.count.textContent = "–";
      live.status.textContent = !issues.length ? "" : unplaced.length ? "Fix these first:" : "Fix the marked fields first.";
      live.sample.replaceChildren();
      return;
    }
    live.count.textContent = result.count.toLocaleString("en");
    live.status.textContent = `Counted just now in ${result.ms} ms.`;
    live.sample.replaceChildren(...result.sample.map((p) => {
      const about = [p.email, p.country].filter(Boolean).join(" · ");
      return el("li", {}, el("a", { href: `/profiles/${encodeURIComponent(p.id)}`, text: p.label }),
        about ? el("div", { class: "muted", text: about }) : null);
    }));
  }
  async function preview() {
    const criteria = toDoc(tree);
    assignPaths(tree, "");
    if (controller) controller.abort();
    if (!criteria) {
      show({ count: null, problems: [] });
      live.status.textContent = "Add a condition to see who matches.";
      return;
    }
    const mine = ++sequence;
    controller = new AbortController();
    live.box.classList.add("busy");
    live.status.textContent = "Counting…";
    try {
      const response = await fetch("/ui/api/segments/preview", {
        method: "POST", signal: controller.signal, credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify({ criteria }),
      });
      const result = await response.json();
      if (mine !== sequence) return;
      show(response.ok ? result : { count: null, problems: [result.message || "The count failed."] });
    } catch (error) {
      if (error.name !== "AbortError" && mine === sequence) show({ count: null, problems: ["The server did not answer."] });
    }
  }

  let initial = { kind: "group", mode: "and", children: [] };
  try {
    if (data.criteria && Object.keys(data.criteria).length) initial = fromDoc(data.criteria);
  } catch (error) {
    live.problems.replaceChildren(el("li", { text: "These conditions cannot be shown in the builder." }));
  }
  const tree = initial.kind === "group" ? initial : { kind: "group", mode: "and", children: [initial] };
  form.addEventListener("submit", (event) => {
    const criteria = toDoc(tree);
    if (!criteria) {
      event.preventDefault();
      show({ count: null, problems: ["Add at least one condition before saving."] });
      return;
    }
    field.value = JSON.stringify(criteria);
  });
  render();
})();
