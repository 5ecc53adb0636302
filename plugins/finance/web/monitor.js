// The finance monitor's live page: polls GET v1/live (once a second; "unchanged" answers are tiny)
// and redraws counters, entities (negative share, volume), the selected entity's trend and the
// newest alerts with the items that triggered them.
(function () {
  "use strict";
  const { api, el } = window.tuneforge;
  const POLL_MS = 1000;
  let version = null, selected = null, last = null, seenAlerts = null, timer = null, polling = false;

  const pct = (x) => Math.round(x * 100) + "%";
  const signed = (x) => (x > 0 ? "+" : "") + x.toFixed(2);

  function counters(snap) {
    const s = snap.stats;
    const rows = [["items scored", s.scored], ["per second", s.items_per_s], ["duplicates", s.duplicates],
                  ["malformed", s.malformed], ["late", s.late], ["alerts", s.alerts], ["suppressed", snap.suppressed]];
    document.getElementById("counts").replaceChildren(...rows.map(([k, v]) =>
      el("div", {}, el("dt", { text: k }), el("dd", { text: Number(v).toLocaleString("en") }))));
    document.getElementById("clock").textContent = "stream time " + (snap.clock ? snap.clock.replace("T", " ").replace("Z", " UTC") : "–");
    document.getElementById("window").textContent = "(last " + snap.window + (snap.market ?
      `; all items: ${snap.market.volume}, ${pct(snap.market.negative)} negative)` : ")");
  }

  function entities(snap) {
    const body = document.getElementById("entities");
    if (!snap.entities.length) {
      body.replaceChildren(el("tr", {}, el("td", { colspan: 5, text: "no items in the current window" })));
      return;
    }
    const alerted = new Set(snap.alerts.map((a) => a.key));
    body.replaceChildren(...snap.entities.map((e) => el("tr", {
      class: [e.key === selected ? "selected" : "", alerted.has(e.key) ? "hot" : ""].join(" ").trim() || null,
      "data-key": e.key,
    },
      el("td", {}, el("button", { type: "button", class: "entity", text: e.key, "aria-pressed": String(e.key === selected),
                                  "aria-label": `${e.key}: show its trend`, onclick: () => select(e.key) })),
      el("td", { text: e.name }),
      el("td", { class: "num", text: e.volume }),
      el("td", {}, el("div", { class: "share" },
        el("div", { class: "bar", "aria-hidden": "true" }, barOf(e.negative)),
        el("span", { class: "value", text: pct(e.negative) }))),
      el("td", { class: "num", text: signed(e.mean) }))));
  }

  function barOf(share) {
    const fill = el("span");
    fill.style.width = Math.round(share * 100) + "%";     // CSSOM, allowed by the page's CSP
    return fill;
  }

  function trend(snap) {
    const box = document.getElementById("trend");
    const t = snap.trend;
    if (!t || !Object.keys(t.series).length) {
      box.replaceChildren(el("p", { class: "tf-note", text: "no trend yet" }));
      return;
    }
    if (!selected || !t.series[selected]) selected = (snap.alerts[0] && t.series[snap.alerts[0].key]) ? snap.alerts[0].key : Object.keys(t.series)[0];
    const s = t.series[selected];
    const hours = t.buckets * t.bucket_s / 3600;
    const span = hours >= 2 ? `${+hours.toFixed(1)} h` : `${Math.round(hours * 60)} min`;
    document.getElementById("trend-of").textContent = `${selected} (${s.name}), last ${span} of stream time, buckets of ${Math.round(t.bucket_s / 60)} min`;
    box.replaceChildren(window.tfChart.draw(selected, t, s, snap.alerts.filter((a) => a.key === selected)));
  }

  function alerts(snap) {
    const list = document.getElementById("alerts");
    const first = seenAlerts === null;
    seenAlerts = seenAlerts || new Set();
    if (!snap.alerts.length) {
      list.replaceChildren(el("li", { class: "none", text: "no alerts" }));
      return;
    }
    const fresh = snap.alerts.filter((a) => !seenAlerts.has(a.id));
    list.replaceChildren(...snap.alerts.map((a) => el("li", {
      class: [a.severity, !first && fresh.includes(a) ? "new" : ""].join(" ").trim(), "data-alert": a.id, "data-key": a.key,
    },
      el("p", { class: "head" }, el("span", { class: "sev", text: a.severity }), `${a.key} · ${a.rule}`),
      el("p", { class: "msg", text: a.message }),
      el("p", { class: "tf-note", text: String(a.time || "").replace("T", " ").replace("Z", " UTC") + (a.volume ? ` · ${a.volume} items` : "") }),
      a.items.length ? el("details", {}, el("summary", { text: `${a.items.length} triggering item(s)` }),
        el("ul", {}, a.items.map((i) => el("li", {},
          el("span", { class: "label-" + i.label, text: i.label }), " ", (i.time || "").slice(11, 16), " ", i.text)))) : null)));
    if (!first && fresh.length) {
      document.getElementById("alert-news").textContent =
        fresh.map((a) => `New ${a.severity} alert: ${a.key}, ${a.message}`).join(". ");
    }
    for (const a of snap.alerts) seenAlerts.add(a.id);
  }

  function render(snap) {
    last = snap;
    counters(snap);
    entities(snap);
    trend(snap);
    alerts(snap);
  }

  function select(key) {
    selected = key;
    if (last) { entities(last); trend(last); }
  }

  async function poll() {
    if (polling) return;
    polling = true;
    clearTimeout(timer);
    const state = document.getElementById("live-state");
    try {
      const snap = await api("v1/live" + (version ? "?version=" + encodeURIComponent(version) : ""));
      if (snap.changed) { version = snap.version; render(snap); }
      state.textContent = "Live: updated " + new Date().toLocaleTimeString("en-GB");
      state.classList.remove("tf-error");
    } catch (err) {
      state.textContent = "Not updating: " + err.message;
      state.classList.add("tf-error");
      if (err.status === 401) { polling = false; return; }  // wait for the token (tuneforge:token)
    }
    polling = false;
    timer = setTimeout(poll, document.hidden ? POLL_MS * 5 : POLL_MS);
  }

  document.addEventListener("DOMContentLoaded", poll);
  document.addEventListener("tuneforge:token", () => { version = null; poll(); });
  document.addEventListener("visibilitychange", () => { if (!document.hidden) poll(); });
})();
