// The alert review page (issue 7). Plain browser JavaScript, no build step, no third-party code.
//
// Why it is written this way:
// * Every API call carries the key as `Authorization: Bearer <key>`. The key lives in
//   sessionStorage (this tab only, gone when it closes), never in a URL, so it does not end
//   up in logs, history or Referer headers.
// * Live updates use fetch() and a ReadableStream SSE parser instead of EventSource: an
//   EventSource cannot send headers, and GET /events only accepts the key in a header.
//   The parser keeps the last event id and resumes with `Last-Event-ID` after a drop.
// * <video> and <img> cannot send headers either, so clips and snapshots are fetched with
//   the key and shown through blob: URLs (revoked when the alert is left).
// * Text from the API (messages, comments, clause text, ids) only ever reaches the page
//   through textContent / attribute values set one by one: never innerHTML. The CSP the
//   server sends (trusted types, no inline script) makes an accidental HTML sink fail loudly.
"use strict";

(() => {
  const KEY_STORAGE = "postwatch.review.key";
  const PAGE_SIZE = 50;
  const RETRY_MS = 3000;
  const MAX_RETRY_MS = 30000;
  const ALERT_EVENTS = new Set([
    "alert.opened", "alert.updated", "alert.closed", "alert.media", "alert.acknowledged",
    "alert.false_alarm",
  ]);

  // The API lives where the page is mounted minus "/review/" (works behind a path prefix).
  const API = (() => {
    const path = window.location.pathname;
    const at = path.lastIndexOf("/review");
    return at >= 0 ? path.slice(0, at) : "";
  })();

  const $ = (id) => document.getElementById(id);
  const ui = {
    keyPanel: $("key-panel"), keyForm: $("key-form"), key: $("key"), keyError: $("key-error"),
    review: $("review"), forget: $("forget"), live: $("live"), list: $("alerts"), more: $("more"),
    listStatus: $("list-status"), detail: $("detail"), filters: $("filters"),
    camera: $("f-camera"), clause: $("f-clause"), state: $("f-state"), ack: $("f-ack"),
    reports: $("reports"), reportList: $("report-list"), reportsStatus: $("reports-status"),
    reportsRefresh: $("reports-refresh"),
  };

  const state = {
    key: null,
    alerts: new Map(), // id -> AlertOut, the rows shown
    order: [], // ids, newest first
    nextCursor: null,
    loading: false,
    pending: [], // live events that arrived while the list was loading
    clauses: new Map(), // id -> Clause (for the gloss in the list)
    selected: null, // AlertDetailOut of the alert shown on the right
    fetching: { id: null, stale: false }, // the detail being fetched, and whether an event overtook it
    media: { id: null, clip: null, snapshot: null, urls: [] },
    generation: 0, // bumped on every key change / list reload: late answers are dropped
    live: { controller: null, lastEventId: null, retryMs: RETRY_MS, failures: 0, timer: null },
  };

  // -- DOM helpers: text only ---------------------------------------------------------------------

  /** An element with attributes and children; strings become text nodes, never markup. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = String(value);
      else if (name === "className") node.className = value;
      else if (name === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function fmtTime(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
  }

  function fmtDuration(seconds) {
    const s = Number(seconds) || 0;
    if (s < 60) return `${s.toFixed(1)} s`;
    const m = Math.floor(s / 60);
    const rest = Math.round(s - m * 60);
    return m < 60 ? `${m} min ${String(rest).padStart(2, "0")} s`
      : `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
  }

  function fmtStream(a) {
    const start = Number(a.start_s).toFixed(1);
    return a.end_s === null || a.end_s === undefined ? `${start} s – (ongoing)`
      : `${start} s – ${Number(a.end_s).toFixed(1)} s`;
  }

  // -- API ---------------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, detail) {
      super(typeof detail === "string" ? detail : `HTTP ${status}`);
      this.status = status;
    }
  }

  async function api(path, { method = "GET", body, raw = false, signal } = {}) {
    const headers = { Authorization: `Bearer ${state.key}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(API + path, {
      method, headers, signal, cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!response.ok) {
      let detail = `HTTP ${response.status}`;
      try {
        const data = await response.json();
        if (typeof data.detail === "string") detail = data.detail;
        else if (Array.isArray(data.detail)) detail = data.detail.map((d) => d.msg).join("; ");
      } catch (_) { /* not JSON */ }
      if (response.status === 401) keyRefused(detail);
      throw new ApiError(response.status, detail);
    }
    return raw ? response : response.json();
  }

  function explain(error) {
    if (error instanceof ApiError) {
      if (error.status === 403) return `Not allowed for this key: ${error.message}`;
      return error.message;
    }
    return `The service did not answer (${error.message || error}).`;
  }

  // -- key -------------------------------------------------------------------------------------------

  function showKeyPanel(message) {
    ui.keyPanel.hidden = false;
    ui.review.hidden = true;
    ui.forget.hidden = true;
    ui.keyError.hidden = !message;
    ui.keyError.textContent = message || "";
    ui.key.focus();
  }

  function keyRefused(detail) {
    if (!state.key) return;
    stopLive("stopped");
    state.key = null;
    sessionStorage.removeItem(KEY_STORAGE);
    showKeyPanel(`The service refused the key: ${detail}`);
  }

  async function useKey(key) {
    state.key = key;
    state.generation += 1;
    ui.keyPanel.hidden = true;
    ui.review.hidden = false;
    ui.forget.hidden = false;
    ui.keyError.hidden = true;
    clearDetail();
    await loadChoices();
    if (!state.key) return; // refused while loading the choices
    sessionStorage.setItem(KEY_STORAGE, key);
    startLive();
    await reload();
    await loadReports();
  }

  function forgetKey() {
    stopLive("off");
    state.key = null;
    state.generation += 1;
    sessionStorage.removeItem(KEY_STORAGE);
    state.alerts.clear();
    state.order = [];
    ui.list.replaceChildren();
    ui.reportList.replaceChildren();
    ui.reports.hidden = true;
    clearDetail();
    ui.key.value = "";
    showKeyPanel("");
  }

  // -- filters --------------------------------------------------------------------------------------

  async function loadChoices() {
    const [cameras, clauses] = await Promise.allSettled([api("/cameras"), api("/clauses")]);
    const cameraOptions = [el("option", { value: "", text: "any" })];
    if (cameras.status === "fulfilled") {
      const seen = new Set();
      for (const c of cameras.value) {
        if (seen.has(c.id)) continue;
        seen.add(c.id);
        const label = c.name && c.name !== c.id ? `${c.id} (${c.name})` : c.id;
        cameraOptions.push(el("option", { value: c.id, text: label }));
      }
    }
    ui.camera.replaceChildren(...cameraOptions);
    const clauseOptions = [el("option", { value: "", text: "any" })];
    state.clauses.clear();
    if (clauses.status === "fulfilled") {
      for (const c of clauses.value) {
        state.clauses.set(c.id, c);
        const gloss = c.gloss.length > 60 ? `${c.gloss.slice(0, 57)}…` : c.gloss;
        clauseOptions.push(el("option", { value: c.id, text: `${c.id} — ${gloss}` }));
      }
    }
    ui.clause.replaceChildren(...clauseOptions);
  }

  function filters() {
    return {
      camera: ui.camera.value, clause: ui.clause.value, state: ui.state.value, acknowledged: ui.ack.value,
    };
  }

  function matches(alert) {
    const f = filters();
    if (f.camera && alert.camera !== f.camera) return false;
    if (f.clause && alert.clause !== f.clause) return false;
    if (f.state && alert.open !== (f.state === "open")) return false;
    if (f.acknowledged && alert.acknowledged !== (f.acknowledged === "true")) return false;
    return true;
  }

  function query(cursor) {
    const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
    for (const [name, value] of Object.entries(filters())) if (value) params.set(name, value);
    if (cursor) params.set("cursor", cursor);
    return `/alerts?${params}`;
  }

  // -- the list ---------------------------------------------------------------------------------------

  async function reload() {
    state.generation += 1;
    const generation = state.generation;
    state.loading = true;
    state.pending = [];
    ui.listStatus.textContent = "Loading alerts…";
    try {
      const page = await api(query(null));
      if (generation !== state.generation) return;
      state.alerts.clear();
      state.order = [];
      for (const a of page.items) {
        state.alerts.set(a.id, a);
        state.order.push(a.id);
      }
      state.nextCursor = page.next_cursor;
      state.loading = false;
      for (const [kind, alert] of state.pending.splice(0)) applyEvent(kind, alert);
      renderList();
    } catch (error) {
      if (generation === state.generation) ui.listStatus.textContent = explain(error);
    } finally {
      if (generation === state.generation) state.loading = false;
    }
  }

  async function loadMore() {
    if (!state.nextCursor) return;
    const generation = state.generation;
    ui.more.disabled = true;
    try {
      const page = await api(query(state.nextCursor));
      if (generation !== state.generation) return;
      for (const a of page.items) {
        if (state.alerts.has(a.id)) continue;
        state.alerts.set(a.id, a);
        state.order.push(a.id);
      }
      state.nextCursor = page.next_cursor;
      renderList();
    } catch (error) {
      ui.listStatus.textContent = explain(error);
    } finally {
      ui.more.disabled = false;
    }
  }

  function badges(a, fresh) {
    return el("span", { className: "badges" },
      fresh ? el("span", { className: "badge new", text: "new" }) : null,
      el("span", { className: a.open ? "badge open" : "badge", text: a.open ? "open" : "closed" }),
      a.acknowledged ? el("span", { className: "badge ack", text: "acknowledged" }) : null,
      a.false_alarm ? el("span", { className: "badge fa", text: "false alarm" }) : null);
  }

  function row(a) {
    const clause = state.clauses.get(a.clause);
    const track = a.track_id === null ? "post (no person)" : `track ${a.track_id}`;
    const li = el("li", {
      dataset: { id: String(a.id), clause: a.clause, open: String(a.open) },
      "aria-current": state.selected && state.selected.id === a.id ? "true" : null,
      className: a._fresh === true ? "new" : null, // highlighted once, when it arrives
    });
    const button = el("button", { type: "button" },
      el("div", { className: "row-head" },
        el("span", { className: "row-clause", text: a.clause }),
        badges(a, a._fresh)),
      clause ? el("div", { className: "row-gloss", text: clause.gloss }) : null,
      el("div", { className: "row-meta",
        text: `#${a.id} · ${a.camera} · ${track} · ${fmtTime(a.started_at)} · ${fmtDuration(a.duration_s)}` }));
    button.addEventListener("click", () => select(a.id));
    li.append(button);
    return li;
  }

  function renderList() {
    ui.list.replaceChildren(...state.order.map((id) => row(state.alerts.get(id))));
    for (const a of state.alerts.values()) if (a._fresh === true) a._fresh = "shown";
    const n = state.order.length;
    ui.listStatus.textContent = n === 0 ? "No alerts match these filters."
      : `${n} alert${n === 1 ? "" : "s"}${state.nextCursor ? " (more below)" : ""}`;
    ui.more.hidden = !state.nextCursor;
  }

  /** Put a live alert into the list: update it in place, insert it by id, or drop it when it no
   * longer matches the filters (an acknowledged alert leaves an "unacknowledged" list). */
  function applyEvent(kind, alert) {
    const known = state.alerts.get(alert.id);
    if (known) {
      if (!matches(alert)) {
        state.alerts.delete(alert.id);
        state.order = state.order.filter((id) => id !== alert.id);
      } else {
        state.alerts.set(alert.id, { ...alert, _fresh: known._fresh });
      }
    } else if (matches(alert)) {
      const oldest = state.order.length ? state.order[state.order.length - 1] : null;
      // An alert older than the loaded pages belongs to a page not loaded yet.
      if (oldest === null || alert.id > oldest || !state.nextCursor) {
        state.alerts.set(alert.id, { ...alert, _fresh: kind === "alert.opened" });
        const at = state.order.findIndex((id) => id < alert.id);
        if (at < 0) state.order.push(alert.id);
        else state.order.splice(at, 0, alert.id);
      }
    }
  }

  function onAlertEvent(kind, alert) {
    if (state.loading) state.pending.push([kind, alert]);
    else {
      applyEvent(kind, alert);
      renderList();
    }
    if (state.selected && state.selected.id === alert.id) {
      state.selected = { ...state.selected, ...alert };
      renderDetail();
    }
    if (state.fetching.id === alert.id) state.fetching.stale = true;
  }

  // -- the selected alert ----------------------------------------------------------------------------

  function releaseMedia() {
    for (const url of state.media.urls) URL.revokeObjectURL(url);
    state.media = { id: null, clip: null, snapshot: null, urls: [] };
  }

  function clearDetail() {
    releaseMedia();
    state.selected = null;
    ui.detail.replaceChildren(el("p", { className: "hint",
      text: "Select an alert to see its clip and the clause it is about." }));
  }

  async function select(id) {
    const key = state.key;
    for (const li of ui.list.children) {
      li.setAttribute("aria-current", li.dataset.id === String(id) ? "true" : "false");
    }
    try {
      // An event about this alert (its clip written, say) may arrive while the detail is on its
      // way; the answer then predates it, so ask again rather than show a stale detail for good.
      let detail;
      for (let tries = 0; tries < 5; tries += 1) {
        state.fetching = { id, stale: false };
        detail = await api(`/alerts/${id}`);
        if (state.fetching.id !== id) return; // another alert was selected meanwhile: it wins
        if (!state.fetching.stale) break;
      }
      state.fetching = { id: null, stale: false };
      if (key !== state.key) return;
      if (!state.selected || state.selected.id !== id) releaseMedia();
      state.selected = detail;
      renderDetail();
    } catch (error) {
      ui.detail.replaceChildren(el("p", { className: "error", text: explain(error) }));
    }
  }

  /** Fetch a clip or snapshot with the key and give back a blob: URL for <video>/<img>. */
  async function mediaUrl(path) {
    const response = await api(path, { raw: true });
    const url = URL.createObjectURL(await response.blob());
    state.media.urls.push(url);
    return url;
  }

  function mediaBox(a) {
    // Kept across re-renders of the same alert so a playing clip is not restarted.
    if (state.media.id === a.id && state.media.box
        && state.media.clip === a.clip_url && state.media.snapshot === a.snapshot_url) {
      return state.media.box;
    }
    if (state.media.id !== a.id) releaseMedia();
    const box = el("div", { className: "media" });
    state.media.id = a.id;
    state.media.clip = a.clip_url;
    state.media.snapshot = a.snapshot_url;
    state.media.box = box;
    if (a.clip_url) {
      const video = el("video", {
        id: "clip", controls: true, muted: true, playsinline: true, preload: "auto",
        "aria-label": `Clip of alert ${a.id}`,
      });
      video.muted = true;
      box.append(video);
      mediaUrl(a.clip_url).then((url) => {
        if (state.media.box === box) {
          video.src = url;
          video.dataset.loaded = "true";
        }
      }).catch((error) => box.replaceChildren(el("p", { className: "error", text: explain(error) })));
    } else {
      box.append(el("p", { className: "placeholder", id: "clip-missing",
        text: a.open ? "The clip is being recorded: it appears here a few seconds after the alert opens."
          : "This alert has no clip." }));
    }
    if (a.snapshot_url) {
      const img = el("img", { id: "snapshot", alt: `Snapshot of alert ${a.id}` });
      box.append(el("figure", {}, img, el("figcaption", { className: "hint", text: "Snapshot" })));
      mediaUrl(a.snapshot_url).then((url) => { if (state.media.box === box) img.src = url; })
        .catch(() => img.replaceWith(el("span", { className: "hint", text: "(snapshot unavailable)" })));
    }
    return box;
  }

  function clauseBox(a) {
    const text = a.clause_text;
    if (!text) {
      return el("aside", { className: "clause", id: "clause" },
        el("h3", { text: a.clause }), el("p", { className: "hint", text: "This clause is no longer in the catalogue." }));
    }
    return el("aside", { className: "clause", id: "clause" },
      el("h3", { text: text.id }),
      el("div", { className: "section", lang: "zh", text: text.section }),
      el("blockquote", { lang: "zh", id: "clause-zh" }, text.text_zh.map((line) => el("p", { text: line }))),
      el("p", { className: "gloss", lang: "en", id: "clause-gloss", text: text.gloss }));
  }

  function facts(a) {
    const items = [
      ["Camera", `${a.camera} (site ${a.site})`],
      ["Person", a.track_id === null ? "— (the post itself)" : `track ${a.track_id}`],
      ["Role on duty", a.role || "—"],
      ["Started", fmtTime(a.started_at)],
      ["Ended", a.open ? "still going on" : fmtTime(a.ended_at)],
      ["Stream time", fmtStream(a)],
      ["Duration", fmtDuration(a.duration_s)],
      ["Confidence", `${Math.round((Number(a.confidence) || 0) * 100)} %`],
      ["What was seen", a.message || "—"],
    ];
    return el("dl", { className: "facts", id: "facts" },
      items.map(([name, value]) => [el("dt", { text: name }), el("dd", { text: value })]));
  }

  function review(a) {
    const ackBox = el("div", { id: "ack-box" }, el("h3", { text: "Acknowledge" }));
    if (a.acknowledged) {
      const r = a.ack || {};
      ackBox.append(el("p", { className: "done", id: "ack-done",
        text: `Acknowledged by ${r.by || "?"} at ${fmtTime(r.at)}` }));
      if (r.comment) ackBox.append(el("blockquote", { text: r.comment }));
    } else {
      const comment = el("textarea", { id: "ack-comment", maxlength: "2000",
        placeholder: "What was done about it (optional)", "aria-label": "Acknowledgement comment" });
      const submit = el("button", { type: "submit", id: "ack-button", text: "Acknowledge" });
      const error = el("p", { className: "error", role: "alert" });
      const form = el("form", {}, comment, submit, error);
      form.addEventListener("submit", (ev) => {
        ev.preventDefault();
        act(a.id, "ack", { comment: comment.value }, submit, error);
      });
      ackBox.append(form);
    }

    const faBox = el("div", { id: "fa-box" }, el("h3", { text: "False alarm" }));
    const r = a.false_alarm_review;
    if (a.false_alarm) {
      faBox.append(el("p", { className: "done", id: "fa-done",
        text: `Marked as a false alarm by ${(r && r.by) || "?"} at ${fmtTime(r && r.at)}` }));
      if (r && r.comment) faBox.append(el("blockquote", { text: r.comment }));
    } else if (r) {
      faBox.append(el("p", { className: "hint", text: `False-alarm mark taken back by ${r.by} at ${fmtTime(r.at)}` }));
    }
    const comment = el("textarea", { id: "fa-comment", maxlength: "2000", "aria-label": "False alarm comment",
      placeholder: a.false_alarm ? "Why it is a real violation after all" : "Why this is not a real violation" });
    const submit = el("button", { type: "submit", id: "fa-button",
      text: a.false_alarm ? "Not a false alarm" : "Mark as false alarm" });
    const error = el("p", { className: "error", role: "alert" });
    const form = el("form", {}, comment, submit, error);
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      act(a.id, "false-alarm", { comment: comment.value, false_alarm: !a.false_alarm }, submit, error);
    });
    faBox.append(form);
    return el("section", { className: "review", "aria-label": "Review" }, ackBox, faBox);
  }

  async function act(id, action, body, button, error) {
    button.disabled = true;
    error.textContent = "";
    try {
      const updated = await api(`/alerts/${id}/${action}`, { method: "POST", body });
      onAlertEvent("alert.updated", updated);
    } catch (e) {
      error.textContent = e instanceof ApiError && e.status === 409 ? `${e.message} (reload to see it)`
        : explain(e);
      button.disabled = false;
    }
  }

  function renderDetail() {
    const a = state.selected;
    if (!a) return;
    const focused = document.activeElement && ui.detail.contains(document.activeElement)
      ? document.activeElement.id : null;
    const drafts = {};
    for (const id of ["ack-comment", "fa-comment"]) {
      const field = document.getElementById(id);
      if (field) drafts[id] = field.value;
    }
    ui.detail.replaceChildren(
      el("h2", { id: "detail-title", dataset: { id: String(a.id) } },
        `Alert #${a.id} · ${a.clause} `, badges(a, false)),
      el("div", { className: "evidence" }, mediaBox(a), clauseBox(a)),
      facts(a),
      review(a));
    // A live update must not throw away a comment being typed.
    for (const [id, value] of Object.entries(drafts)) {
      const field = document.getElementById(id);
      if (field) field.value = value;
    }
    if (focused) document.getElementById(focused)?.focus();
  }

  // -- live: SSE over fetch -----------------------------------------------------------------------------

  function setLive(mode, text) {
    ui.live.dataset.state = mode;
    ui.live.textContent = text || `live: ${mode}`;
  }

  function stopLive(mode) {
    const live = state.live;
    if (live.controller) live.controller.abort();
    clearTimeout(live.timer);
    live.controller = null;
    live.lastEventId = null;
    live.failures = 0;
    setLive(mode);
  }

  function startLive() {
    stopLive("connecting");
    const controller = new AbortController();
    state.live.controller = controller;
    stream(controller).catch(() => {});
  }

  function retryLater(controller, why) {
    if (controller.signal.aborted || state.live.controller !== controller) return;
    const live = state.live;
    live.failures += 1;
    const delay = Math.min(live.retryMs * 2 ** Math.min(live.failures - 1, 4), MAX_RETRY_MS);
    setLive("retrying", `live: reconnecting in ${Math.round(delay / 1000)} s (${why})`);
    live.timer = setTimeout(() => {
      if (state.live.controller === controller) stream(controller).catch(() => {});
    }, delay);
  }

  /** One connection to GET /events; reconnects (with Last-Event-ID) until aborted. */
  async function stream(controller) {
    const live = state.live;
    const headers = { Authorization: `Bearer ${state.key}`, Accept: "text/event-stream" };
    if (live.lastEventId) headers["Last-Event-ID"] = live.lastEventId;
    let response;
    try {
      response = await fetch(`${API}/events`, { headers, signal: controller.signal, cache: "no-store" });
    } catch (error) {
      retryLater(controller, "no connection");
      return;
    }
    if (response.status === 401) {
      keyRefused("invalid or revoked API key");
      return;
    }
    if (response.status === 403) {
      setLive("stopped", "live: not allowed for this key");
      return;
    }
    if (!response.ok || !response.body) {
      retryLater(controller, `HTTP ${response.status}`);
      return;
    }
    live.failures = 0;
    setLive("connected");
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    const parser = sseParser((event) => dispatch(event, controller));
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.push(value);
      }
    } catch (error) {
      if (controller.signal.aborted) return;
    }
    if (!controller.signal.aborted && live.controller === controller && ui.live.dataset.state !== "stopped") {
      retryLater(controller, "stream ended");
    }
  }

  /** An incremental parser of the text/event-stream format (the WHATWG rules, no EventSource). */
  function sseParser(onEvent) {
    let buffer = "";
    let data = [];
    let type = "";
    let id = null; // the id buffer: it becomes the resume point only once its event is complete
    function line(text) {
      if (text === "") {
        if (id !== null) state.live.lastEventId = id;
        if (data.length || type) onEvent({ type: type || "message", data: data.join("\n"), id });
        data = [];
        type = "";
        return;
      }
      if (text.startsWith(":")) return; // a comment (the keep-alives)
      const colon = text.indexOf(":");
      const field = colon < 0 ? text : text.slice(0, colon);
      let value = colon < 0 ? "" : text.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "data") data.push(value);
      else if (field === "event") type = value;
      else if (field === "id" && !value.includes("\0")) id = value;
      else if (field === "retry" && /^\d+$/.test(value)) state.live.retryMs = Number(value);
    }
    return {
      push(chunk) {
        buffer += chunk;
        for (;;) {
          const at = buffer.search(/[\r\n]/);
          if (at < 0) return;
          if (buffer[at] === "\r" && at === buffer.length - 1) return; // wait: maybe "\r\n"
          const skip = buffer[at] === "\r" && buffer[at + 1] === "\n" ? 2 : 1;
          const text = buffer.slice(0, at);
          buffer = buffer.slice(at + skip);
          line(text);
        }
      },
    };
  }

  function dispatch(event, controller) {
    if (state.live.controller !== controller) return;
    if (event.type === "resync") {
      reload(); // events were missed: the list is re-read, the stream goes on
      return;
    }
    if (event.type === "revoked") {
      controller.abort();
      keyRefused("the API key was revoked");
      return;
    }
    if (!ALERT_EVENTS.has(event.type)) return;
    let payload;
    try {
      payload = JSON.parse(event.data);
    } catch (_) {
      return;
    }
    if (payload && payload.alert) onAlertEvent(event.type, payload.alert);
  }

  // -- camera reports ---------------------------------------------------------------------------------
  // Managers and security leads read them; a trainer's key gets 403 and the section stays hidden.
  // The files are fetched with the key (a link cannot send it) and saved through a blob: URL.

  async function loadReports() {
    const key = state.key; // a late answer for a key since forgotten is dropped
    let reports;
    try {
      reports = await api("/reports/cameras?limit=20");
    } catch (error) {
      if (key !== state.key) return;
      ui.reports.hidden = !(error instanceof ApiError) || error.status === 403;
      ui.reportsStatus.textContent = explain(error);
      return;
    }
    if (key !== state.key) return;
    ui.reports.hidden = false;
    ui.reportsStatus.textContent = reports.length ? "" : "No camera has reported yet.";
    ui.reportList.replaceChildren(...reports.map(reportRow));
  }

  function reportRow(r) {
    const what = `${r.site} / ${r.camera} · from ${fmtTime(r.started_at)} · ` +
      `${fmtDuration(r.stream_t)} · ${r.final ? "ended" : "running"}`;
    const buttons = [download(`Report ${r.id} (JSON)`, `/reports/cameras/${r.id}`,
      `report-${r.camera}-${r.id}.json`, "report")];
    if (r.has_audit) {
      buttons.push(download(`Shift audit ${r.id} (HTML)`, `/reports/cameras/${r.id}/audit`,
        `audit-${r.camera}-${r.id}.html`, "audit"));
    }
    return el("li", { className: "report", dataset: { id: r.id } }, el("span", { text: what }), buttons);
  }

  function download(label, path, filename, kind) {
    const button = el("button", { type: "button", text: label, dataset: { kind } });
    button.addEventListener("click", async () => {
      button.disabled = true;
      button.dataset.state = "loading";
      try {
        const response = await api(path, { raw: true });
        const url = URL.createObjectURL(await response.blob());
        const link = el("a", { href: url, download: filename, hidden: true });
        document.body.append(link);
        link.click();
        link.remove();
        setTimeout(() => URL.revokeObjectURL(url), 10000);
        button.dataset.state = "done";
      } catch (error) {
        button.dataset.state = "failed";
        ui.reportsStatus.textContent = explain(error);
      } finally {
        button.disabled = false;
      }
    });
    return button;
  }

  // -- wiring -----------------------------------------------------------------------------------------

  ui.keyForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const key = ui.key.value.trim();
    if (key) useKey(key).catch((error) => showKeyPanel(explain(error)));
  });
  ui.forget.addEventListener("click", forgetKey);
  ui.filters.addEventListener("change", () => reload());
  ui.filters.addEventListener("submit", (ev) => ev.preventDefault());
  ui.more.addEventListener("click", loadMore);
  ui.reportsRefresh.addEventListener("click", () => loadReports());

  const stored = sessionStorage.getItem(KEY_STORAGE);
  if (stored) useKey(stored).catch((error) => showKeyPanel(explain(error)));
  else showKeyPanel("");
})();
