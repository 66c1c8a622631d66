// The console's pages: live incident list, actions on an incident, the box on the still.
"use strict";

(function () {
  const body = document.body;
  const lang = body.dataset.lang || "id";
  const csrf = body.dataset.csrf || "";

  function ago(iso) {
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    const id = lang === "id";
    if (s < 60) return id ? "baru saja" : "just now";
    if (s < 3600) return Math.floor(s / 60) + (id ? " menit lalu" : " min ago");
    if (s < 86400) return Math.floor(s / 3600) + (id ? " jam lalu" : " h ago");
    return Math.floor(s / 86400) + (id ? " hari lalu" : " d ago");
  }

  function refreshAges() {
    document.querySelectorAll("[data-since]").forEach((el) => {
      if (el.dataset.since) el.textContent = ago(el.dataset.since);
    });
  }

  function connect(onEvent) {
    const live = document.getElementById("live");
    const source = new EventSource("/api/v1/stream");
    source.onopen = () => {
      if (live) { live.textContent = live.dataset.on; live.classList.remove("off"); }
    };
    source.onerror = () => {
      if (live) { live.textContent = live.dataset.off; live.classList.add("off"); }
    };
    source.addEventListener("alarm", (e) => onEvent("alarm", JSON.parse(e.data)));
    source.addEventListener("refused", (e) => onEvent("refused", JSON.parse(e.data)));
    return source;
  }

  // ------------------------------------------------------------------ incident list
  const table = document.getElementById("incidents");
  if (table) {
    const words = table.dataset;
    const list = (name) => (words[name] || "").split(",").filter(Boolean);
    const filters = {
      state: list("filterState"), type: list("filterType"), desa: list("filterDesa"),
      kecamatan: list("filterKecamatan"), source: list("filterSource"),
    };
    const matches = (a) =>
      (!filters.state.length || filters.state.includes(a.state)) &&
      (!filters.type.length || filters.type.includes(a.alarm_type)) &&
      (!filters.desa.length || filters.desa.includes((a.desa || "").toLowerCase())) &&
      (!filters.kecamatan.length || filters.kecamatan.includes((a.kecamatan || "").toLowerCase())) &&
      (!filters.source.length || filters.source.includes(a.source_id));
    const word = (key) => words["word" + key.charAt(0).toUpperCase() + key.slice(1).toLowerCase().replace(/_(.)/g, (m, c) => c.toUpperCase())] || key;
    const tbody = table.tBodies[0];

    function cell(tr, html) { const td = document.createElement("td"); td.innerHTML = html; tr.appendChild(td); return td; }
    function text(s) { const d = document.createElement("div"); d.textContent = s == null ? "" : String(s); return d.innerHTML; }

    function render(a) {
      const tr = document.createElement("tr");
      tr.className = "sev-" + a.severity + " state-" + a.state.toLowerCase();
      tr.dataset.alarm = a.alarm_id;
      tr.dataset.version = a.version;
      cell(tr, '<span class="badge sev-' + text(a.severity) + '">' + text(word(a.severity)) + "</span>");
      cell(tr, '<a href="/incidents/' + text(a.alarm_id) + '">' + text(a.alarm_type) + "</a>");
      const place = cell(tr, text(a.place_name) + (a.desa ? "<small>" + text(a.desa) + (a.kecamatan ? ", " + text(a.kecamatan) : "") + "</small>" : ""));
      place.className = "place";
      const age = cell(tr, ago(a.opened_at)); age.className = "age"; age.dataset.since = a.opened_at;
      const st = cell(tr, '<span class="badge st-' + a.state.toLowerCase() + '">' + text(word(a.state)) + "</span>"); st.className = "state";
      const who = cell(tr, text(a.assignee || "")); who.className = "assignee";
      return tr;
    }

    if (table.dataset.live === "yes") {
      connect((kind, a) => {
        if (kind !== "alarm") return;
        const old = tbody.querySelector('tr[data-alarm="' + a.alarm_id + '"]');
        if (old && Number(old.dataset.version) >= a.version) return;
        if (!matches(a)) { if (old) old.remove(); return; }
        const row = render(a);
        if (old) { old.replaceWith(row); } else { row.classList.add("new"); tbody.prepend(row); }
        const empty = document.querySelector(".empty");
        if (empty) empty.hidden = true;
      });
    }
    refreshAges();
    setInterval(refreshAges, 30000);
  }

  // ------------------------------------------------------------------ one incident
  const incident = document.getElementById("incident");
  if (incident) {
    const alarmId = incident.dataset.alarm;
    const words = incident.dataset;
    const status = document.getElementById("action-status");
    const form = document.getElementById("action-form");
    let waiting = null;

    // The page shows what is stored: after a decision it waits for the database to have
    // that version (the live feed hears of it first), then reloads.
    function reloadWhenStored(version, tries) {
      fetch("/api/v1/alarms/" + alarmId, { credentials: "same-origin" })
        .then((r) => r.json())
        .then((d) => {
          if (d.alarm.version >= version || tries <= 0) window.location.reload();
          else setTimeout(() => reloadWhenStored(version, tries - 1), 250);
        })
        .catch(() => setTimeout(() => reloadWhenStored(version, tries - 1), 500));
    }

    function done(kind, detail) {
      if (!waiting) return;
      waiting = null;
      if (kind === "applied") {
        status.textContent = words.wordApplied;
        status.className = "status ok";
        reloadWhenStored(detail ? detail.version : 0, 120);
      } else {
        status.textContent = words.wordRefused + ": " + detail;
        status.className = "status error";
        document.querySelectorAll("button.act").forEach((b) => { b.disabled = false; });
      }
    }

    connect((kind, data) => {
      if (!waiting || data.action_id !== waiting) return;
      done(kind === "alarm" ? "applied" : "refused", kind === "alarm" ? data : data.reason);
    });

    function poll(actionId, tries) {
      if (waiting !== actionId || tries <= 0) return;
      fetch("/api/v1/actions/" + actionId, { credentials: "same-origin" })
        .then((r) => r.json())
        .then((o) => {
          if (waiting !== actionId) return;
          if (o.status === "applied") done("applied", { version: o.version });
          else if (o.status === "refused") done("refused", o.reason);
          else setTimeout(() => poll(actionId, tries - 1), 2000);
        })
        .catch(() => setTimeout(() => poll(actionId, tries - 1), 2000));
    }

    const fields = {
      ack: ["note"], dispatch: ["to", "note"], resolve: ["note", "photo"],
      false_positive: ["reason", "note"], comment: ["note", "photo"], assign: ["to", "note"],
    };
    document.querySelectorAll("button.act").forEach((button) => {
      button.addEventListener("click", () => {
        const action = button.dataset.action;
        form.hidden = false;
        form.elements.action.value = action;
        ["to", "reason", "note", "photo"].forEach((f) => {
          form.querySelector(".for-" + f).hidden = !fields[action].includes(f);
        });
        form.elements.to.required = action === "dispatch" || action === "assign";
        form.elements.note.required = action === "comment";
        const first = form.querySelector("label:not([hidden]) input, label:not([hidden]) textarea");
        if (first) first.focus();
      });
    });
    if (form) {
      form.querySelector(".cancel").addEventListener("click", () => { form.hidden = true; });
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        const action = form.elements.action.value;
        const data = new FormData();
        const use = fields[action];
        if (use.includes("note")) data.append("note", form.elements.note.value);
        if (use.includes("to")) data.append("to", form.elements.to.value);
        if (use.includes("reason")) data.append("reason", form.elements.reason.value);
        if (use.includes("photo") && form.elements.photo.files.length) data.append("photo", form.elements.photo.files[0]);
        document.querySelectorAll("button.act").forEach((b) => { b.disabled = true; });
        status.textContent = words.wordSent;
        status.className = "status";
        fetch("/api/v1/alarms/" + alarmId + "/" + action.replace("_", "-"), {
          method: "POST", body: data, credentials: "same-origin", headers: { "X-CSRF-Token": csrf },
        })
          .then((r) => r.json().then((body) => ({ ok: r.ok, body })))
          .then(({ ok, body }) => {
            if (!ok) { waiting = "x"; done("refused", body.detail); return; }
            form.hidden = true;
            form.reset();
            waiting = body.action_id;
            poll(body.action_id, 30);
          })
          .catch((err) => { waiting = "x"; done("refused", String(err)); });
      });
    }

    // The detector's box on the alert still, scaled to the picture as shown.
    document.querySelectorAll("figure.boxed").forEach((fig) => {
      const box = (fig.dataset.box || "").split(",").map(Number);
      const img = fig.querySelector("img");
      const mark = fig.querySelector(".box");
      if (box.length !== 4 || box.some(isNaN) || !img || !mark) return;
      const place = () => {
        if (!img.naturalWidth) return;
        const k = img.clientWidth / img.naturalWidth;
        mark.style.left = box[0] * k + "px";
        mark.style.top = box[1] * k + "px";
        mark.style.width = (box[2] - box[0]) * k + "px";
        mark.style.height = (box[3] - box[1]) * k + "px";
        mark.hidden = false;
      };
      if (img.complete) place(); else img.addEventListener("load", place);
      window.addEventListener("resize", place);
    });
  }
})();
