// The status page's refresh: poll /api/status and put its view in place.
// The server formats every text; this only builds the same markup as the
// server-rendered page (src/http/status.rs).
(function () {
  "use strict";
  var polls = 0;
  var wait = 2000;

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) { e.textContent = text; }
    return e;
  }

  function section(s) {
    var sec = el("section", { id: "s-" + s.id });
    sec.appendChild(el("h2", {}, s.title));
    if (!s.rows.length) {
      sec.appendChild(el("p", { "class": "empty" }, s.empty));
      return sec;
    }
    var table = el("table");
    if (s.columns.some(function (c) { return c !== ""; })) {
      var tr = el("tr");
      s.columns.forEach(function (c, i) {
        // A column of numbers is aligned as its first row is.
        var first = s.rows[0][i];
        tr.appendChild(el("th", Array.isArray(first) && first[1] === "num" ? { "class": "num" } : {}, c));
      });
      table.appendChild(el("thead")).appendChild(tr);
    }
    var body = table.appendChild(el("tbody"));
    s.rows.forEach(function (row) {
      var r = body.appendChild(el("tr"));
      row.forEach(function (c) {
        r.appendChild(Array.isArray(c) ? el("td", { "class": c[1] }, c[0]) : el("td", {}, c));
      });
    });
    sec.appendChild(el("div", { "class": "scroll" })).appendChild(table);
    return sec;
  }

  function render(st) {
    var v = st.view;
    wait = v.poll_ms || wait;
    document.getElementById("summary").textContent = v.summary;
    document.getElementById("chart-line").setAttribute("points", v.chart.points);
    document.getElementById("chart-span").textContent = v.chart.span;
    document.getElementById("chart-max").textContent = v.chart.max;
    var main = document.getElementById("sections");
    var fresh = document.createDocumentFragment();
    v.sections.forEach(function (s) { fresh.appendChild(section(s)); });
    main.replaceChildren(fresh);
    var conn = document.getElementById("conn");
    conn.className = "muted";
    conn.textContent = "live: updated " + new Date().toLocaleTimeString();
    polls += 1;
    document.body.setAttribute("data-polls", String(polls));
  }

  function failed(e) {
    var conn = document.getElementById("conn");
    conn.className = "bad";
    conn.textContent = "cannot reach the server (" + e + "); retrying";
  }

  function poll() {
    fetch("/api/status", { cache: "no-store" })
      .then(function (r) {
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.json();
      })
      .then(render, failed)
      .then(function () { setTimeout(poll, wait); });
  }

  poll();
})();
