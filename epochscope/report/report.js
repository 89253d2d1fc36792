(function () {
  "use strict";
  var R = window.EpochscopeReport = {viewers: {}};
  function data(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }
  function b64(s, T) {
    var bin = atob(s), u = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) u[i] = bin.charCodeAt(i);
    return new T(u.buffer);
  }
  function find(keys, key) {
    var lo = 0, hi = keys.length - 1;
    while (lo <= hi) {
      var mid = (lo + hi) >> 1;
      if (keys[mid] === key) return mid;
      if (keys[mid] < key) lo = mid + 1; else hi = mid - 1;
    }
    return -1;
  }
  var classes = data("es-classes");
  R.classes = classes;

  function Viewer(root, cfg) {
    var canvas = root.querySelector("canvas"), ctx = canvas.getContext("2d");
    var readout = root.querySelector(".es-readout");
    var n = cfg.n, M = 12, W = canvas.width, size = W - M;
    var levels = cfg.levels.map(function (l) {
      var im = new Image(); im.onload = function () { draw(); }; im.src = l.src;
      return {b: l.b, im: im};
    });
    var keys = null, values = null, images = null;
    if (cfg.cells) {
      keys = b64(cfg.cells.keys, Int32Array);
      values = b64(cfg.cells.values, cfg.kind === "diff" ? Float32Array : Int32Array);
      if (cfg.cells.images) images = b64(cfg.cells.images, Int32Array);
    }
    var v = {x: 0, y: 0, s: size / n};
    var minS = size / n, maxS = Math.max(64, minS);
    function clamp() {
      v.s = Math.min(maxS, Math.max(minS, v.s));
      var span = size / v.s;
      v.x = Math.min(Math.max(0, v.x), Math.max(0, n - span));
      v.y = Math.min(Math.max(0, v.y), Math.max(0, n - span));
    }
    function pick() {
      for (var i = 0; i < levels.length; i++) if (levels[i].b * v.s >= 1) return levels[i];
      return levels[levels.length - 1];
    }
    function draw() {
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.fillStyle = "#ffffff"; ctx.fillRect(0, 0, W, W);
      ctx.fillStyle = "#101018"; ctx.fillRect(M, M, size, size);
      var l = pick();
      if (l.im.complete && l.im.naturalWidth) {
        ctx.save();
        ctx.beginPath(); ctx.rect(M, M, size, size); ctx.clip();
        ctx.imageSmoothingEnabled = false;
        var k = v.s * l.b;
        ctx.setTransform(k, 0, 0, k, M - v.x * v.s, M - v.y * v.s);
        ctx.drawImage(l.im, 0, 0);
        ctx.restore();
      }
      // band strips along both axes
      var first = Math.max(0, Math.floor(v.x)), last = Math.min(n, Math.ceil(v.x + size / v.s));
      var firstY = Math.max(0, Math.floor(v.y)), lastY = Math.min(n, Math.ceil(v.y + size / v.s));
      ctx.save(); ctx.beginPath(); ctx.rect(M, 0, size, M - 2); ctx.rect(0, M, M - 2, size); ctx.clip();
      for (var i = first; i < last; i++) {
        ctx.fillStyle = classes.colours[classes.band_of_slot[i]];
        ctx.fillRect(M + (i - v.x) * v.s, 0, Math.max(v.s, 1), M - 2);
      }
      for (var j = firstY; j < lastY; j++) {
        ctx.fillStyle = classes.colours[classes.band_of_slot[j]];
        ctx.fillRect(0, M + (j - v.y) * v.s, M - 2, Math.max(v.s, 1));
      }
      ctx.restore();
      if (v.s >= 12) {  // cell borders once single cells are large
        ctx.save(); ctx.beginPath(); ctx.rect(M, M, size, size); ctx.clip();
        ctx.strokeStyle = "rgba(255,255,255,0.12)"; ctx.lineWidth = 1;
        ctx.beginPath();
        for (var a = first; a <= last; a++) {
          var px = Math.round(M + (a - v.x) * v.s) + 0.5; ctx.moveTo(px, M); ctx.lineTo(px, W);
        }
        for (var b = firstY; b <= lastY; b++) {
          var py = Math.round(M + (b - v.y) * v.s) + 0.5; ctx.moveTo(M, py); ctx.lineTo(W, py);
        }
        ctx.stroke(); ctx.restore();
      }
      var zoom = root.querySelector(".es-zoom");
      if (zoom) zoom.textContent = (v.s >= 1 ? v.s.toFixed(1) + " px per cell" : (1 / v.s).toFixed(1) + " cells per px");
    }
    function describe(r, c) {
      if (r < 0 || c < 0 || r >= n || c >= n) return "";
      var t = classes.names[r], p = classes.names[c];
      var text = "true: " + t + "  \u2192  guess: " + p;
      if (keys) {
        var i = find(keys, r * n + c), val = i < 0 ? 0 : values[i];
        if (cfg.kind === "diff") text += "   difference of shares: " + (100 * val).toFixed(2) + " points";
        else {
          var share = images && images[r] ? val / images[r] : 0;
          text += "   count " + val + " (" + (100 * share).toFixed(1) + "% of " + (images ? images[r] : "?") + " images)";
        }
      }
      return text;
    }
    function cellAt(ev) {
      var rect = canvas.getBoundingClientRect();
      var x = (ev.clientX - rect.left) * (W / rect.width) - M, y = (ev.clientY - rect.top) * (W / rect.height) - M;
      return [Math.floor(v.y + y / v.s), Math.floor(v.x + x / v.s)];
    }
    canvas.addEventListener("wheel", function (ev) {
      ev.preventDefault();
      var rect = canvas.getBoundingClientRect();
      var mx = (ev.clientX - rect.left) * (W / rect.width) - M, my = (ev.clientY - rect.top) * (W / rect.height) - M;
      var cx = v.x + mx / v.s, cy = v.y + my / v.s;
      v.s *= Math.exp(-ev.deltaY * 0.002);
      clamp(); v.x = cx - mx / v.s; v.y = cy - my / v.s; clamp(); draw();
    }, {passive: false});
    var drag = null;
    canvas.addEventListener("mousedown", function (ev) { drag = [ev.clientX, ev.clientY]; });
    window.addEventListener("mouseup", function () { drag = null; });
    canvas.addEventListener("mousemove", function (ev) {
      if (drag) {
        v.x -= (ev.clientX - drag[0]) / v.s; v.y -= (ev.clientY - drag[1]) / v.s;
        drag = [ev.clientX, ev.clientY]; clamp(); draw();
      }
      var rc = cellAt(ev); readout.textContent = describe(rc[0], rc[1]);
    });
    function zoomBy(f) {
      var cx = v.x + size / 2 / v.s, cy = v.y + size / 2 / v.s;
      v.s *= f; clamp(); v.x = cx - size / 2 / v.s; v.y = cy - size / 2 / v.s; clamp(); draw();
    }
    function zoomTo(trueIndex, guessIndex) {
      var r = classes.slot[trueIndex], c = classes.slot[guessIndex];
      v.s = maxS; clamp();
      v.x = c + 0.5 - size / 2 / v.s; v.y = r + 0.5 - size / 2 / v.s; clamp(); draw();
      readout.textContent = describe(r, c);
      var cxp = M + (c + 0.5 - v.x) * v.s, cyp = M + (r + 0.5 - v.y) * v.s;
      return {x: cxp * canvas.getBoundingClientRect().width / W, y: cyp * canvas.getBoundingClientRect().height / W, px: v.s};
    }
    function byName(text) {
      var i = classes.index_of[text];
      if (i === undefined && /^\d+$/.test(text)) i = parseInt(text, 10);
      return i;
    }
    var go = root.querySelector(".es-go");
    if (go) go.addEventListener("click", function () {
      var t = byName(root.querySelector(".es-true").value), p = byName(root.querySelector(".es-guess").value);
      if (t === undefined || p === undefined) { readout.textContent = "no such class"; return; }
      zoomTo(t, p);
    });
    root.querySelector(".es-in").addEventListener("click", function () { zoomBy(2); });
    root.querySelector(".es-out").addEventListener("click", function () { zoomBy(0.5); });
    root.querySelector(".es-reset").addEventListener("click", function () { v.s = minS; v.x = 0; v.y = 0; draw(); });
    draw();
    return {zoomTo: zoomTo, zoomBy: zoomBy, view: v, draw: draw, level: function () { return pick().b; }};
  }

  function sortable(table) {
    var heads = table.querySelectorAll("th");
    heads.forEach(function (th, col) {
      th.addEventListener("click", function () {
        var asc = !th.classList.contains("sorted-asc");
        heads.forEach(function (h) { h.classList.remove("sorted-asc", "sorted-desc"); });
        th.classList.add(asc ? "sorted-asc" : "sorted-desc");
        var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
        var numeric = th.classList.contains("num");
        rows.sort(function (a, b) {
          var x = a.cells[col].getAttribute("data-v"), y = b.cells[col].getAttribute("data-v");
          if (x === null) x = a.cells[col].textContent;
          if (y === null) y = b.cells[col].textContent;
          var d;
          if (numeric) {
            var fx = parseFloat(x), fy = parseFloat(y);
            if (isNaN(fx)) fx = -Infinity; if (isNaN(fy)) fy = -Infinity;
            d = fx - fy;
          } else d = x.localeCompare(y);
          return asc ? d : -d;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  }
  function filterable(input) {
    var table = document.getElementById(input.getAttribute("data-table"));
    input.addEventListener("input", function () {
      var q = input.value.toLowerCase(), shown = 0;
      Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
        var ok = r.textContent.toLowerCase().indexOf(q) >= 0;
        r.style.display = ok ? "" : "none"; if (ok) shown++;
      });
      var count = document.getElementById(input.getAttribute("data-count"));
      if (count) count.textContent = shown + " shown";
    });
  }
  function slider(root) {
    var frames = data(root.getAttribute("data-frames")), epochs = frames.epochs, srcs = frames.frames;
    var input = root.querySelector("input[type=range]"), img = root.querySelector("img");
    var label = root.querySelector(".es-epoch"), play = root.querySelector(".es-play"), timer = null;
    function show(i) { img.src = srcs[i]; label.textContent = "epoch " + epochs[i]; input.value = i; }
    input.addEventListener("input", function () { show(parseInt(input.value, 10)); });
    play.addEventListener("click", function () {
      if (timer) { clearInterval(timer); timer = null; play.textContent = "play"; return; }
      play.textContent = "pause";
      timer = setInterval(function () {
        var i = (parseInt(input.value, 10) + 1) % srcs.length; show(i);
        if (i === srcs.length - 1) { clearInterval(timer); timer = null; play.textContent = "play"; }
      }, 400);
    });
    show(srcs.length - 1);
  }
  function plots() {
    if (!window.Plotly) return;
    document.querySelectorAll("[data-plot]").forEach(function (div) {
      var fig = data(div.getAttribute("data-plot"));
      Plotly.newPlot(div, fig.data, fig.layout, {displaylogo: false, responsive: true});
    });
  }
  function start() {
    document.querySelectorAll(".es-matrix").forEach(function (root) {
      R.viewers[root.id] = Viewer(root, data(root.getAttribute("data-config")));
    });
    document.querySelectorAll("table.sortable").forEach(sortable);
    document.querySelectorAll("input.es-filter").forEach(filterable);
    document.querySelectorAll(".es-slider").forEach(slider);
    plots();
    R.ready = true;
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
