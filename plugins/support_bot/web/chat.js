// The support-bot chat page: POST v1/chat per message (the server issues the session id), answers
// with their kind and sources, clarifying choices as buttons, helpful / not helpful (POST v1/feedback
// with the session id and the turn ref), and a hand-off to a person on request.
(function () {
  "use strict";
  const { api, el } = window.tuneforge;
  const SESSION = "tuneforge-chat-session";
  const HUMAN = "I want to talk to a person";
  const KINDS = {
    template: "Answer", retrieval: "From our help pages", clarify: "Question", handoff: "Passed to a person",
    smalltalk: "Chat", decline: "Not something I can help with", help: "Help", reset: "Reset", quit: "Goodbye",
  };
  const RATED = new Set(["template", "retrieval"]);      // answers worth a helpful / not helpful

  let log, input, send, human, status;
  let session = sessionStorage.getItem(SESSION);

  function humanize(intent) {
    return intent ? intent.replace(/\?+$/, "").replace(/_/g, " ").toLowerCase() : "";
  }

  // The choices of a clarifying answer: a "choices" list if the server sends one, else the numbered
  // options of the clarify template ("do you mean (1) X or (2) Y?").
  function choicesOf(reply) {
    if (Array.isArray(reply.choices)) return reply.choices.map(String);
    const found = [];
    const pattern = /\((\d)\)\s*(.+?)(?=\s+or\s+\(\d\)|,\s*\(\d\)|\?|$)/g;
    let m;
    while ((m = pattern.exec(reply.answer)) !== null) found.push(m[2].trim());
    return found;
  }

  function add(node) {
    log.append(node);
    node.scrollIntoView({ block: "end" });
    return node;
  }

  function userMessage(text) {
    return add(el("li", { class: "msg user" }, el("p", { class: "text" }, el("span", { class: "visually-hidden" }, "You: "), text)));
  }

  function botMessage(reply) {
    const kind = reply.kind;
    const meta = [el("span", { class: "kind", text: KINDS[kind] || kind })];
    if (reply.intent && kind !== "smalltalk") meta.push(" · " + humanize(reply.intent));
    if (["template", "retrieval", "clarify"].includes(kind)) meta.push(" · " + Math.round(reply.confidence * 100) + "% sure");
    const item = el("li", { class: "msg bot", "data-kind": kind, "data-turn": reply.turn || "" },
      el("p", { class: "meta" }, el("span", { class: "visually-hidden" }, "Assistant, "), meta),
      el("p", { class: "text", text: reply.answer }));
    const sources = (reply.sources || []).filter((s) => s && (s.citation || s.source));
    if (sources.length && kind !== "clarify") {
      item.append(el("ul", { class: "sources", "aria-label": "Sources" },
        sources.map((s) => el("li", { text: s.citation || s.source }))));
    }
    if (reply.ticket) item.append(el("p", { class: "ticket", text: "Ticket #" + reply.ticket }));
    if (kind === "clarify") {
      const options = choicesOf(reply);
      if (options.length) {
        const group = el("div", { class: "choices", role: "group", "aria-label": "Choose what you mean" });
        options.forEach((label, i) => group.append(el("button", {
          type: "button", class: "tf-secondary choice", text: label,
          onclick: () => { disable(group); ask(String(i + 1), label); },
        })));
        group.append(el("button", { type: "button", class: "tf-secondary choice", text: "None of these",
                                    onclick: () => { disable(group); ask("no", "None of these"); } }));
        item.append(group);
      }
    }
    if (RATED.has(kind) && reply.turn) item.append(feedback(reply));
    return add(item);
  }

  function feedback(reply) {
    const group = el("div", { class: "feedback", role: "group", "aria-label": "Was this answer helpful?" },
      el("span", { text: "Helpful?" }));
    const rate = async (verdict, button) => {
      disable(group);
      button.setAttribute("aria-pressed", "true");
      try {
        await api("v1/feedback", { session_id: session, turn: reply.turn, verdict });
        group.append(el("span", { class: "thanks", role: "status", text: "Thanks for your feedback." }));
      } catch (err) {
        group.append(el("span", { class: "tf-error", role: "alert", text: "Feedback not saved: " + err.message }));
      }
    };
    const yes = el("button", { type: "button", class: "tf-secondary", "aria-pressed": "false", text: "Yes",
                               "aria-label": "Yes, helpful", onclick: () => rate("right", yes) });
    const no = el("button", { type: "button", class: "tf-secondary", "aria-pressed": "false", text: "No",
                              "aria-label": "No, not helpful", onclick: () => rate("wrong", no) });
    group.append(yes, no);
    return group;
  }

  function disable(group) {
    group.querySelectorAll("button").forEach((b) => { b.disabled = true; });
  }

  function busy(on) {
    send.disabled = on;
    human.disabled = on;
    log.setAttribute("aria-busy", String(on));
    status.textContent = on ? "The assistant is answering…" : "";
  }

  async function chat(message) {
    const body = session ? { message, session_id: session } : { message };
    try {
      return await api("v1/chat", body);
    } catch (err) {
      if (err.status === 404 && session) {       // the server forgot this session (a new store): start over
        session = null;
        sessionStorage.removeItem(SESSION);
        return api("v1/chat", { message });
      }
      throw err;
    }
  }

  // send ``message``; ``shown`` is what the customer sees they said (a choice's label)
  async function ask(message, shown) {
    userMessage(shown || message);
    busy(true);
    const typing = add(el("li", { class: "msg bot typing", "aria-hidden": "true" }, el("p", { class: "text" })));
    let refocus = true;
    try {
      const reply = await chat(message);
      session = reply.session_id;
      sessionStorage.setItem(SESSION, session);
      typing.remove();
      botMessage(reply);
    } catch (err) {
      typing.remove();
      add(el("li", { class: "msg error", role: "alert", text: err.status === 401
        ? "Not sent: this server needs its token (the Token button above). Then send again." : err.message }));
      refocus = err.status !== 401;             // the token form has the focus now
    } finally {
      busy(false);
      if (refocus) input.focus();
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    log = document.getElementById("log");
    input = document.getElementById("message");
    send = document.getElementById("send");
    human = document.getElementById("human");
    status = document.getElementById("status");
    if (new URLSearchParams(location.search).has("embed")) document.body.classList.add("embed");
    document.getElementById("composer").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const text = input.value.trim();
      if (!text || send.disabled) return;
      input.value = "";
      ask(text);
    });
    human.addEventListener("click", () => ask(HUMAN));
    input.focus();
  });
  document.addEventListener("tuneforge:token", () => input.focus());
})();
