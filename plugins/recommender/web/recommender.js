// The recommender page: pick a known user (GET v1/users) or describe a taste, and see ten
// recommendations (POST v1/recommend) with the history items that drove each ("because you liked").
(function () {
  "use strict";
  const { api, el } = window.tuneforge;
  const K = 10;

  async function loadUsers() {
    const select = document.getElementById("user");
    try {
      const data = await api("v1/users?limit=200");
      select.replaceChildren(...data.users.map((u) => el("option", {
        value: u.user, text: `user ${u.user} · ${u.history} liked` + (u.recent.length ? ` · latest: ${u.recent[0]}` : ""),
      })));
      if (!data.users.length) select.replaceChildren(el("option", { value: "", text: "no known users" }));
    } catch (err) {
      select.replaceChildren(el("option", { value: "", text: "users not loaded: " + err.message }));
    }
  }

  function render(result) {
    const list = document.getElementById("results");
    list.replaceChildren(...result.recommendations.map((r) => el("li", { "data-item": r.item },
      el("span", { class: "title", text: r.title }),
      el("span", { class: "score", text: "score " + r.score.toFixed(3) }),
      r.because.length
        ? el("p", { class: "because", text: "Because you liked " + r.because.map((b) => b.title).join(", ") })
        : el("p", { class: "because", text: result.mode === "taste" ? "Matches the taste you described" : "Popular right now" }))));
    const who = result.mode === "taste" ? "the taste you described" : `user ${result.user} (${result.history_size} liked)`;
    document.getElementById("about").textContent =
      `${result.recommendations.length} recommendations for ${who}, ranked by ${result.ranked_by}, in ${result.took_ms} ms.`;
  }

  async function submit(ev) {
    ev.preventDefault();
    const about = document.getElementById("about");
    const mode = document.querySelector("input[name=mode]:checked").value;
    const body = { k: K };
    if (mode === "user") {
      body.user = document.getElementById("user").value;
      if (!body.user) { about.textContent = "Pick a user first."; return; }
    } else {
      body.taste = document.getElementById("taste").value.trim();
      if (!body.taste) { about.textContent = "Describe a taste first."; document.getElementById("taste").focus(); return; }
    }
    const go = document.getElementById("go");
    go.disabled = true;
    about.textContent = "Ranking…";
    try {
      render(await api("v1/recommend", body));
    } catch (err) {
      about.textContent = "No recommendations: " + err.message;
    } finally {
      go.disabled = false;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.getElementById("ask").addEventListener("submit", submit);
    // typing a taste or picking a user selects that mode
    document.getElementById("taste").addEventListener("input", () => { document.getElementById("mode-taste").checked = true; });
    document.getElementById("user").addEventListener("change", () => { document.getElementById("mode-user").checked = true; });
    loadUsers();
  });
  document.addEventListener("tuneforge:token", loadUsers);
})();
