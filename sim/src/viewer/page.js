"use strict";
// The run viewer: everything is drawn on one canvas from the embedded run data, for the
// time window [view.t0, view.t1] (simulated microseconds).
(function () {
  var D = JSON.parse(document.getElementById("run-data").textContent);
  var ROLES = ["follower", "pre_candidate", "candidate", "leader"];
  var ROLE_COLOURS = ["#e8e8e8", "#fde9a8", "#f9b26b", "#7cc47c"];
  var KINDS = ["PreVote", "RequestVote", "PreVoteResponse", "RequestVoteResponse",
    "AppendEntries", "AppendEntriesResponse", "InstallSnapshot"];
  var KIND_COLOURS = ["#b58900", "#cb4b16", "#b58900", "#cb4b16", "#268bd2", "#2aa198", "#6c71c4"];
  var OUTCOMES = ["ok", "failed", "unknown", "pending"];
  var OUTCOME_COLOURS = ["#4caf50", "#e53935", "#fb8c00", "#9e9e9e"];
  var GUTTER = 56, AXIS = 22, NET = 10, LANE = 44, ROW = 7, GAP = 10;
  // Messages are drawn only when this few are in view; else the page says how to see them.
  var ARROWS_MAX = 2500;

  var canvas = document.getElementById("timeline");
  var ctx = canvas.getContext("2d");
  var tooltip = document.getElementById("tooltip");
  var nodes = D.nodes;
  var end = Math.max(D.end_us, 1);
  var view = { t0: 0, t1: end };
  var clients = 0;
  D.ops.forEach(function (op) { clients = Math.max(clients, op[4] + 1); });
  var opRows = clients + 1; // the last row holds the simulator's own liveness probe
  var opsTop = AXIS + NET + nodes * LANE + GAP;
  var height = opsTop + opRows * ROW + 24;
  var drawn = []; // arrows drawn this frame, for hovering: [x0, y0, x1, y1, send]

  // Role segments per node: [start, end, role, term, leader]; crashes end them.
  var segments = [];
  var lastRole = [];
  for (var n = 0; n < nodes; n++) { segments.push([]); lastRole.push([0, 0, 0, 0]); }
  D.roles.forEach(function (r) {
    var node = r[1], last = lastRole[node];
    segments[node].push([last[0], r[0], last[1], last[2], last[3]]);
    lastRole[node] = [r[0], r[2], r[3], r[4]];
  });
  for (n = 0; n < nodes; n++) {
    var l = lastRole[n];
    segments[n].push([l[0], end, l[1], l[2], l[3]]);
  }
  // Fault-state segments per node from the marks: [start, end, flags, tick_us].
  var states = [];
  for (n = 0; n < nodes; n++) states.push([]);
  D.marks.forEach(function (m) {
    var list = states[m[1]];
    if (list.length) list[list.length - 1][1] = m[0];
    list.push([m[0], end, m[2], m[3]]);
  });
  var netSegments = D.network.map(function (w, k) {
    var next = k + 1 < D.network.length ? D.network[k + 1][0] : end;
    return [w[0], next, w[1] / w[2], w[3] / w[4]];
  });
  var commitsBy = [], eventsBy = [];
  for (n = 0; n < nodes; n++) { commitsBy.push([]); eventsBy.push([]); }
  D.commits.forEach(function (c) { commitsBy[c[1]].push(c); });
  var globalEvents = [];
  D.events.forEach(function (e) { (e[1] >= 0 ? eventsBy[e[1]] : globalEvents).push(e); });
  var maxDelay = 0;
  D.sends.forEach(function (s) { maxDelay = Math.max(maxDelay, s[1] - s[0]); });

  function x(t) { return GUTTER + (t - view.t0) / (view.t1 - view.t0) * (canvas.width - GUTTER); }
  function timeAt(px) { return view.t0 + (px - GUTTER) / (canvas.width - GUTTER) * (view.t1 - view.t0); }
  function laneTop(node) { return AXIS + NET + node * LANE; }
  // As the CLI prints simulated time (microsecond precision).
  function seconds(t) { return (t / 1e6).toFixed(6) + "s"; }
  function short(t, step) { return (t / 1e6).toFixed(Math.max(0, 6 - Math.floor(Math.log10(step)))) + "s"; }
  // First index whose item[0] >= t, in a list sorted by item[0].
  function lowerBound(list, t) {
    var lo = 0, hi = list.length;
    while (lo < hi) { var mid = (lo + hi) >> 1; if (list[mid][0] < t) lo = mid + 1; else hi = mid; }
    return lo;
  }

  function messageText(s) {
    var kind = KINDS[s[4]], a = s[6], b = s[7], c = s[8], d = s[9];
    var text = kind + " n" + (s[2] + 1) + "->n" + (s[3] + 1) + " t" + s[5];
    if (s[4] <= 1) text += " last=i" + a + "/t" + b;
    else if (s[4] <= 3) text += a ? " granted" : " refused";
    else if (s[4] === 4) text += " prev=i" + a + "/t" + b + " entries=" + c + " commit=i" + d;
    else if (s[4] === 5) text += (b ? " reject" : " ok") + " i" + a;
    else text += " after=i" + a + "/t" + b + " data=" + c + "B";
    return text + "\nsent " + seconds(s[0]) + ", arrives " + seconds(s[1]);
  }

  function drawAxis() {
    ctx.fillStyle = "#555";
    ctx.font = "11px sans-serif";
    var span = view.t1 - view.t0, step = Math.pow(10, Math.floor(Math.log10(span / 8)));
    if (span / step > 16) step *= 5; else if (span / step > 8) step *= 2;
    for (var t = Math.ceil(view.t0 / step) * step; t <= view.t1; t += step) {
      var px = x(t);
      ctx.fillRect(px, AXIS - 6, 1, 6);
      ctx.fillText(short(t, step), px + 2, AXIS - 8);
      ctx.fillStyle = "#f0f0f0";
      ctx.fillRect(px, AXIS, 1, height - AXIS);
      ctx.fillStyle = "#555";
    }
    if (D.fault_phase_us >= view.t0 && D.fault_phase_us <= view.t1) {
      ctx.fillStyle = "#888";
      ctx.fillRect(x(D.fault_phase_us), AXIS, 2, height - AXIS);
      ctx.fillText("liveness phase", x(D.fault_phase_us) + 4, AXIS + NET + 10);
    }
  }

  function drawSpan(t0, t1, top, h, colour) {
    if (t1 < view.t0 || t0 > view.t1) return;
    var a = Math.max(x(t0), GUTTER), b = Math.min(x(t1), canvas.width);
    ctx.fillStyle = colour;
    ctx.fillRect(a, top, Math.max(b - a, 1), h);
  }

  function drawLanes() {
    netSegments.forEach(function (w) {
      if (w[2] > 0) drawSpan(w[0], w[1], AXIS, NET / 2, "rgba(230,120,0," + (0.3 + w[2]) + ")");
      if (w[3] > 0) drawSpan(w[0], w[1], AXIS + NET / 2, NET / 2, "rgba(0,150,150," + (0.3 + w[3]) + ")");
    });
    ctx.font = "10px sans-serif";
    for (var n = 0; n < nodes; n++) {
      var top = laneTop(n) + 2, h = LANE - 6;
      segments[n].forEach(function (s) {
        drawSpan(s[0], s[1], top, h, ROLE_COLOURS[s[2]]);
        var a = Math.max(x(s[0]), GUTTER), b = Math.min(x(s[1]), canvas.width);
        if (b - a > 34) {
          ctx.fillStyle = "#333";
          ctx.fillText("t" + s[3] + (s[2] ? " " + ROLES[s[2]] : ""), a + 3, top + 11);
        }
      });
      states[n].forEach(function (s) {
        if (s[2] & 1) drawSpan(s[0], s[1], top, h, "rgba(40,40,40,0.75)");
        if (s[2] & 2) drawSpan(s[0], s[1], top, h, "rgba(140,60,200,0.45)");
        if (s[2] & 4) drawSpan(s[0], s[1], top + h - 12, 6, "rgba(220,0,0,0.55)");
        if (s[3] !== D.nominal_tick_us) drawSpan(s[0], s[1], top + h - 5, 4, "rgba(30,90,220,0.7)");
      });
      drawCommits(n, top, h);
      drawEvents(eventsBy[n], top, h);
    }
    drawEvents(globalEvents, AXIS, NET);
  }

  // One mark per pixel column at most: a zoomed-out run stays drawable.
  function drawCommits(n, top, h) {
    var list = commitsBy[n], k = lowerBound(list, view.t0), lastPx = -1;
    ctx.fillStyle = "#1b5e20";
    for (; k < list.length && list[k][0] <= view.t1; k++) {
      var px = Math.round(x(list[k][0]));
      if (px === lastPx) continue;
      lastPx = px;
      ctx.fillRect(px, top + h / 2, 1, h / 2 - 12);
    }
  }

  var EVENT_COLOURS = ["#000", "#d00", "#1565c0", "#7b1fa2", "#e65100", "#999", "#555", "#00838f", "#555"];
  function drawEvents(list, top, h) {
    var k = lowerBound(list, view.t0), lastPx = [];
    for (; k < list.length && list[k][0] <= view.t1; k++) {
      var e = list[k], code = e[2];
      if (code === 5 || code === 6 || code === 8) continue; // shown as messages, ops, roles
      var px = Math.round(x(e[0]));
      if (lastPx[code] === px) continue;
      lastPx[code] = px;
      ctx.fillStyle = EVENT_COLOURS[code];
      if (code === 4) { ctx.fillRect(px, AXIS, 1, NET + nodes * LANE); continue; }
      ctx.fillRect(px - 1, top, 3, code === 1 ? h : 8);
    }
  }

  function drawMessages() {
    drawn = [];
    var k = lowerBound(D.sends, view.t0 - maxDelay), visible = [];
    for (; k < D.sends.length && D.sends[k][0] <= view.t1; k++) {
      if (D.sends[k][1] >= view.t0) visible.push(D.sends[k]);
      if (visible.length > ARROWS_MAX) break;
    }
    if (visible.length > ARROWS_MAX) {
      ctx.fillStyle = "#888";
      ctx.fillText("zoom in to see messages as arrows", GUTTER + 4, AXIS + NET + nodes * LANE - 2);
      return;
    }
    visible.forEach(function (s) {
      var x0 = x(s[0]), y0 = laneTop(s[2]) + LANE / 2, x1 = x(s[1]), y1 = laneTop(s[3]) + LANE / 2;
      ctx.strokeStyle = KIND_COLOURS[s[4]];
      ctx.globalAlpha = s[8] === 0 && s[4] === 4 ? 0.35 : 0.85; // heartbeats fainter
      ctx.beginPath(); ctx.moveTo(x0, y0); ctx.lineTo(x1, y1); ctx.stroke();
      var angle = Math.atan2(y1 - y0, x1 - x0);
      ctx.beginPath(); ctx.moveTo(x1, y1);
      ctx.lineTo(x1 - 6 * Math.cos(angle - 0.4), y1 - 6 * Math.sin(angle - 0.4));
      ctx.lineTo(x1 - 6 * Math.cos(angle + 0.4), y1 - 6 * Math.sin(angle + 0.4));
      ctx.closePath(); ctx.fillStyle = KIND_COLOURS[s[4]]; ctx.fill();
      drawn.push([x0, y0, x1, y1, s]);
    });
    ctx.globalAlpha = 1;
  }

  function drawOps() {
    ctx.fillStyle = "#555";
    ctx.fillText("clients", 4, opsTop + 8);
    D.ops.forEach(function (op) {
      var complete = op[2] < 0 ? end : op[2];
      var row = op[4] < 0 ? clients : op[4];
      drawSpan(op[1], complete, opsTop + row * ROW, ROW - 1, OUTCOME_COLOURS[op[3]]);
    });
  }

  function drawViolation() {
    var v = D.violation;
    if (!v || v.time_us < view.t0 || v.time_us > view.t1) return;
    var px = x(v.time_us);
    ctx.fillStyle = "#d00";
    ctx.fillRect(px - 1, AXIS, 3, height - AXIS);
    ctx.beginPath(); ctx.moveTo(px - 7, AXIS); ctx.lineTo(px + 7, AXIS); ctx.lineTo(px, AXIS + 10);
    ctx.fill();
    ctx.fillText("VIOLATION: " + v.invariant, Math.min(px + 6, canvas.width - 200), height - 8);
  }

  function draw() {
    canvas.width = canvas.clientWidth || 1200;
    canvas.height = height;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    drawAxis();
    drawLanes();
    drawMessages();
    drawOps();
    drawViolation();
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, AXIS, GUTTER - 2, height - AXIS);
    document.getElementById("window").textContent =
      seconds(view.t0) + " – " + seconds(view.t1) + " (" + seconds(view.t1 - view.t0) + " shown)";
    var scrub = document.getElementById("scrub");
    var span = view.t1 - view.t0;
    scrub.value = span >= end ? 0 : Math.round(view.t0 / (end - span) * 1000);
    canvas.setAttribute("data-lanes-drawn", String(nodes));
  }

  function setView(t0, t1) {
    var span = Math.min(Math.max(t1 - t0, 200), end);
    t0 = Math.min(Math.max(t0, 0), end - span);
    view.t0 = t0; view.t1 = t0 + span;
    draw();
  }
  function zoom(factor, at) {
    var span = (view.t1 - view.t0) * factor;
    var t = at === undefined ? (view.t0 + view.t1) / 2 : at;
    var share = (t - view.t0) / (view.t1 - view.t0);
    setView(t - span * share, t - span * share + span);
  }

  canvas.addEventListener("wheel", function (e) {
    e.preventDefault();
    var rect = canvas.getBoundingClientRect();
    zoom(e.deltaY > 0 ? 1.25 : 0.8, timeAt(e.clientX - rect.left));
  }, { passive: false });
  var dragging = null;
  canvas.addEventListener("mousedown", function (e) { dragging = { x: e.clientX, t0: view.t0, t1: view.t1 }; });
  window.addEventListener("mouseup", function () { dragging = null; });
  canvas.addEventListener("mousemove", function (e) {
    var rect = canvas.getBoundingClientRect();
    if (dragging) {
      var dt = (dragging.x - e.clientX) / (canvas.width - GUTTER) * (dragging.t1 - dragging.t0);
      setView(dragging.t0 + dt, dragging.t1 + dt);
      return;
    }
    hover(e.clientX - rect.left, e.clientY - rect.top);
  });
  canvas.addEventListener("mouseleave", function () { tooltip.hidden = true; });
  document.getElementById("fit").onclick = function () { setView(0, end); };
  document.getElementById("zoom-in").onclick = function () { zoom(0.5); };
  document.getElementById("zoom-out").onclick = function () { zoom(2); };
  document.getElementById("scrub").oninput = function (e) {
    var span = view.t1 - view.t0, t0 = e.target.value / 1000 * (end - span);
    setView(t0, t0 + span);
  };

  function nearest(list, t, slack) {
    var k = lowerBound(list, t - slack), best = null;
    for (; k < list.length && list[k][0] <= t + slack; k++) {
      if (!best || Math.abs(list[k][0] - t) < Math.abs(best[0] - t)) best = list[k];
    }
    return best;
  }

  function hover(px, py) {
    var t = timeAt(px), slack = 4 / (canvas.width - GUTTER) * (view.t1 - view.t0), text = null;
    if (py >= opsTop) {
      var row = Math.floor((py - opsTop) / ROW);
      D.ops.forEach(function (op) {
        var r = op[4] < 0 ? clients : op[4], complete = op[2] < 0 ? end : op[2];
        if (!text && r === row && op[1] - slack <= t && t <= complete + slack) {
          text = "op" + op[0] + (op[4] < 0 ? " (liveness probe)" : " client " + op[4]) +
            ": " + OUTCOMES[op[3]] + (op[3] === 0 ? " at i" + op[5] : "") +
            "\ninvoked " + seconds(op[1]) + (op[2] < 0 ? "" : ", completed " + seconds(op[2])) +
            (op[6] ? "\ncommitted at i" + op[6] : "");
        }
      });
    } else if (py >= AXIS + NET) {
      var node = Math.floor((py - AXIS - NET) / LANE);
      var arrow = drawn.find(function (d) { return nearSegment(px, py, d); });
      if (arrow) text = messageText(arrow[4]);
      var e = node < nodes && !text ? nearest(eventsBy[node], t, slack) : null;
      if (e) text = seconds(e[0]) + " " + e[3];
      if (!text && node < nodes) {
        var seg = segments[node].find(function (s) { return s[0] <= t && t < s[1]; });
        var c = nearest(commitsBy[node], t, slack);
        if (seg) text = "n" + (node + 1) + " " + ROLES[seg[2]] + " in t" + seg[3] +
          (seg[4] ? ", leader n" + seg[4] : "") + (c ? "\ncommit i" + c[2] + " at " + seconds(c[0]) : "");
      }
    } else if (py >= AXIS) {
      var g = nearest(globalEvents, t, slack);
      if (g) text = seconds(g[0]) + " " + g[3];
    }
    if (!text) { tooltip.hidden = true; return; }
    tooltip.textContent = text;
    tooltip.style.left = Math.min(px + 12, canvas.width - 300) + "px";
    tooltip.style.top = (py + 12) + "px";
    tooltip.hidden = false;
  }

  function nearSegment(px, py, d) {
    var dx = d[2] - d[0], dy = d[3] - d[1], len = dx * dx + dy * dy;
    var k = len ? Math.max(0, Math.min(1, ((px - d[0]) * dx + (py - d[1]) * dy) / len)) : 0;
    var ex = d[0] + k * dx - px, ey = d[1] + k * dy - py;
    return ex * ex + ey * ey < 9;
  }

  function legend() {
    var html = [];
    ROLES.forEach(function (r, k) { html.push("<span><i style='background:" + ROLE_COLOURS[k] + "'></i>" + r + "</span>"); });
    [["rgba(40,40,40,0.75)", "crashed"], ["rgba(140,60,200,0.45)", "paused"],
      ["rgba(220,0,0,0.55)", "partitioned"], ["rgba(30,90,220,0.7)", "clock skew"],
      ["#d00", "torn write at crash"], ["#1b5e20", "commit"], ["rgba(230,120,0,0.6)", "message loss"],
      ["rgba(0,150,150,0.6)", "duplication"]].forEach(function (p) {
      html.push("<span><i style='background:" + p[0] + "'></i>" + p[1] + "</span>");
    });
    OUTCOMES.forEach(function (o, k) { html.push("<span><i style='background:" + OUTCOME_COLOURS[k] + "'></i>op " + o + "</span>"); });
    document.getElementById("legend").innerHTML = html.join("");
    var lanes = document.getElementById("lanes");
    for (var n = 0; n < nodes; n++) {
      var label = document.createElement("div");
      label.className = "lane";
      label.setAttribute("data-node", String(n + 1));
      label.style.top = (laneTop(n) + LANE / 2 - 8) + "px";
      label.textContent = "n" + (n + 1);
      lanes.appendChild(label);
    }
  }

  function violationPanel() {
    var v = D.violation;
    if (!v) return;
    var panel = document.getElementById("violation");
    var h = document.createElement("h2");
    h.textContent = "VIOLATION: " + v.invariant + " at " + seconds(v.time_us);
    var p = document.createElement("p");
    p.textContent = v.detail + (v.nodes.length ? " (nodes " + v.nodes.map(function (n) { return "n" + n; }).join(", ") + ")" : "");
    var pre = document.createElement("pre");
    pre.textContent = "events before it:\n" + v.recent.join("\n") + "\n\nreplay: " + v.replay;
    panel.appendChild(h); panel.appendChild(p); panel.appendChild(pre);
    panel.hidden = false;
    var jump = document.getElementById("jump");
    jump.hidden = false;
    jump.onclick = function () {
      setView(v.time_us - 50000, v.time_us + 10000);
      return true;
    };
  }

  document.getElementById("summary").textContent = D.summary;
  legend();
  violationPanel();
  window.addEventListener("resize", draw);
  // "#<from>-<to>" (simulated microseconds) opens that window; "#violation" the violation.
  var wanted = /^#(\d+)-(\d+)$/.exec(location.hash);
  if (wanted) setView(Number(wanted[1]), Number(wanted[2]));
  else if (location.hash === "#violation" && D.violation) document.getElementById("jump").onclick();
  else draw();
})();
