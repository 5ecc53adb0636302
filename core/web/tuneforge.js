// What every tuneforge app page shares (served by core at web/tuneforge.js; no build step, no library).
//
// The bearer token: the operator opens the page as PAGE#token=... (the fragment never reaches the
// server, and is removed from the address bar at once) or types it into the token form. It is kept
// in this tab's sessionStorage only, and sent as "Authorization: Bearer ..." to the app's own API.
// Every call is relative to the page, so a page proxied under /support/ calls /support/v1/...
// DOM is built with textContent only (no innerHTML): answers and headlines cannot inject markup.
(function () {
  "use strict";
  const KEY = "tuneforge-token";

  function takeTokenFromFragment() {
    const params = new URLSearchParams(location.hash.slice(1));
    const given = params.get("token");
    if (given === null) return;
    if (given.trim()) sessionStorage.setItem(KEY, given.trim());
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
  }

  function token() {
    return sessionStorage.getItem(KEY) || "";
  }

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  class ApiError extends Error {
    constructor(status, type, message) {
      super(message);
      this.status = status;
      this.type = type;
    }
  }

  async function api(path, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (token()) headers.Authorization = "Bearer " + token();
    let response;
    try {
      response = await fetch(path, {
        method: body === undefined ? "GET" : "POST", headers, cache: "no-store", credentials: "omit",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new ApiError(0, "network", "The server cannot be reached. Is it running?");
    }
    let data = null;
    try { data = await response.json(); } catch (err) { data = null; }
    if (!response.ok) {
      const error = (data && data.error) || {};
      if (response.status === 401) askForToken(token() ? "The server refused this token." : "This server needs its token.");
      throw new ApiError(response.status, error.type || "http_error", error.message || response.statusText);
    }
    return data;
  }

  // -- the token form, in <div id="tf-auth"> ------------------------------------------------------
  let form, input, note;

  function mountAuth() {
    const host = document.getElementById("tf-auth");
    if (!host) return;
    input = el("input", { id: "tf-token", type: "password", autocomplete: "off", spellcheck: "false",
                          "aria-describedby": "tf-token-note" });
    note = el("p", { id: "tf-token-note", class: "tf-note", role: "status" });
    form = el("form", { class: "tf-auth", hidden: true, onsubmit: (ev) => {
      ev.preventDefault();
      if (!input.value.trim()) return;
      sessionStorage.setItem(KEY, input.value.trim());
      input.value = "";
      form.hidden = true;
      toggle.setAttribute("aria-expanded", "false");
      showState();
      document.dispatchEvent(new CustomEvent("tuneforge:token"));
    } },
    el("label", { for: "tf-token", text: "Server token" }), input,
    el("button", { type: "submit", text: "Use token" }),
    el("button", { type: "button", class: "tf-secondary", text: "Forget token", onclick: () => {
      sessionStorage.removeItem(KEY);
      showState();
    } }));
    const toggle = el("button", { type: "button", class: "tf-secondary", "aria-expanded": "false",
                                  "aria-controls": "tf-auth-form", text: "Token", onclick: () => {
      form.hidden = !form.hidden;
      toggle.setAttribute("aria-expanded", String(!form.hidden));
      if (!form.hidden) input.focus();
    } });
    form.id = "tf-auth-form";
    host.append(toggle, form, note);
    showState();
  }

  function showState(message) {
    if (!note) return;
    note.textContent = message || (token() ? "Token set for this tab." : "No token set.");
  }

  function askForToken(message) {
    if (!form) return;
    form.hidden = false;
    showState(message + " Enter it, or open this page as …#token=YOUR_TOKEN.");
    input.focus();
  }

  takeTokenFromFragment();
  document.addEventListener("DOMContentLoaded", mountAuth);
  window.tuneforge = { api, el, token, ApiError, askForToken };
})();
