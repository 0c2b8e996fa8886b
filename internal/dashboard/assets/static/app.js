// reelq dashboard: live fragments over server-sent events, relative
// times, confirmations. No dependencies; the pages work without it (they
// just do not update themselves).
"use strict";
(function () {
  const body = document.body;
  const status = document.getElementById("live-status");

  function setStatus(state, title) {
    if (!status) return;
    status.className = "live " + state;
    status.title = title;
    status.textContent = state === "on" ? "live" : state === "off" ? "offline" : "connecting";
  }

  // The fragments this page has, by id, with their content hashes, so the
  // server sends only what changed since the page was drawn.
  function have() {
    const out = [];
    document.querySelectorAll("[data-frag]").forEach(function (el) {
      out.push(el.id + ":" + el.getAttribute("data-frag"));
    });
    return out.join(",");
  }

  let es = null;
  let wait = 1000;
  function connect() {
    const base = body.getAttribute("data-live");
    if (!base) return;
    setStatus("connecting", "connecting for live updates");
    es = new EventSource(base + "&have=" + encodeURIComponent(have()));
    es.onopen = function () {
      wait = 1000;
      setStatus("on", "live: the page updates as things happen");
    };
    es.addEventListener("frag", function (e) {
      const f = JSON.parse(e.data);
      const el = document.getElementById(f.id);
      if (!el) return;
      const open = Array.from(el.querySelectorAll("details[open]")).map(function (d) {
        return d.querySelector("summary") ? d.querySelector("summary").textContent : "";
      });
      const focused = document.activeElement && el.contains(document.activeElement) ? document.activeElement : null;
      if (focused && focused.tagName === "INPUT" && focused.value) return; // someone is typing
      el.outerHTML = f.html;
      const now = document.getElementById(f.id);
      if (now) {
        now.querySelectorAll("details").forEach(function (d) {
          const s = d.querySelector("summary");
          if (s && open.indexOf(s.textContent) >= 0) d.open = true;
        });
        tick(now);
      }
      body.setAttribute("data-updated", String(Date.now()));
    });
    es.onerror = function () {
      // Reconnect ourselves with the hashes the page has now.
      es.close();
      setStatus("off", "live updates lost; reconnecting");
      setTimeout(connect, wait);
      wait = Math.min(wait * 2, 15000);
    };
  }

  function human(ms) {
    const s = Math.round(Math.abs(ms) / 1000);
    if (s < 60) return s + "s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + "m" + (s % 60 ? (s % 60) + "s" : "");
    const h = Math.floor(m / 60);
    if (h < 48) return h + "h" + (m % 60 ? (m % 60) + "m" : "");
    return Math.floor(h / 24) + "d";
  }

  function tick(root) {
    const now = Date.now();
    (root || document).querySelectorAll("time[datetime]").forEach(function (t) {
      const d = now - Date.parse(t.getAttribute("datetime"));
      if (isNaN(d)) return;
      t.textContent = d >= 0 ? human(d) + " ago" : "in " + human(d);
    });
  }

  document.addEventListener("submit", function (e) {
    const f = e.target.closest("form[data-confirm]");
    if (f && !window.confirm(f.getAttribute("data-confirm"))) e.preventDefault();
  });

  tick();
  setInterval(tick, 1000);
  connect();
  window.addEventListener("pagehide", function () {
    if (es) es.close();
  });
})();
