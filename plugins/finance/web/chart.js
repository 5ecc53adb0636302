// A small SVG trend chart for the monitor page (no library): items and negative items per bucket as
// bars (right scale), mean sentiment as a line (left scale, -1 .. +1), alerts as dashed markers.
(function () {
  "use strict";
  const NS = "http://www.w3.org/2000/svg";
  const W = 720, H = 220, L = 40, R = 40, T = 12, B = 26;

  function svg(tag, attrs, text) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function hhmm(ts) {
    const d = new Date(ts * 1000);
    return isNaN(d.getTime()) ? "?" : d.toISOString().slice(5, 16).replace("T", " ");
  }

  // trend: {start_ts, bucket_s, buckets}; s: {name, volume[], negative[], mean[]}; alerts: [{ts, rule}]
  function draw(key, trend, s, alerts) {
    const n = trend.buckets, bw = (W - L - R) / n;
    const top = Math.max(1, ...s.volume);
    const x = (i) => L + i * bw;
    const yVol = (v) => H - B - (v / top) * (H - T - B);
    const ySent = (m) => T + (1 - m) / 2 * (H - T - B);
    const total = s.volume.reduce((a, b) => a + b, 0), neg = s.negative.reduce((a, b) => a + b, 0);
    const label = `${key}: ${total} items, ${neg} negative, in the last ${n} buckets; ${alerts.length} alert(s)`;
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label });
    root.append(svg("title", {}, label));
    root.append(svg("line", { class: "zero", x1: L, x2: W - R, y1: ySent(0), y2: ySent(0) }));
    s.volume.forEach((v, i) => {
      if (!v) return;
      root.append(svg("rect", { class: "vol", x: x(i) + 0.5, width: Math.max(bw - 1, 1), y: yVol(v), height: H - B - yVol(v) }));
      const k = s.negative[i];
      if (k) root.append(svg("rect", { class: "neg", x: x(i) + 0.5, width: Math.max(bw - 1, 1), y: yVol(k), height: H - B - yVol(k) }));
    });
    const points = s.mean.map((m, i) => (m === null ? null : `${(x(i) + bw / 2).toFixed(1)},${ySent(m).toFixed(1)}`)).filter(Boolean);
    if (points.length > 1) root.append(svg("polyline", { class: "mean", points: points.join(" ") }));
    else if (points.length === 1) {
      const [cx, cy] = points[0].split(",");
      root.append(svg("circle", { class: "mean", cx, cy, r: 3 }));
    }
    for (const a of alerts) {
      const ax = L + (a.ts - trend.start_ts) / trend.bucket_s * bw;
      if (ax < L || ax > W - R) continue;
      const mark = svg("line", { class: "alert", x1: ax, x2: ax, y1: T, y2: H - B });
      mark.append(svg("title", {}, `${a.rule} alert at ${a.time}`));
      root.append(mark);
    }
    root.append(svg("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
    root.append(svg("text", { x: L - 6, y: ySent(1) + 4, "text-anchor": "end" }, "+1"));
    root.append(svg("text", { x: L - 6, y: ySent(0) + 4, "text-anchor": "end" }, "0"));
    root.append(svg("text", { x: L - 6, y: ySent(-1) + 4, "text-anchor": "end" }, "−1"));
    root.append(svg("text", { x: W - R + 6, y: yVol(top) + 4 }, String(top)));
    root.append(svg("text", { x: L, y: H - 8 }, hhmm(trend.start_ts)));
    root.append(svg("text", { x: W - R, y: H - 8, "text-anchor": "end" }, hhmm(trend.start_ts + n * trend.bucket_s) + " UTC"));
    return root;
  }

  window.tfChart = { draw };
})();
