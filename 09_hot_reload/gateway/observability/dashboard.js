// The dashboard's one script: poll /dashboard/data, draw it with uPlot. No build step.
"use strict";

const COLOURS = ["#3366cc", "#dc3912", "#ff9900", "#109618", "#990099", "#0099c6",
                 "#dd4477", "#66aa00", "#b82e2e", "#316395"];
const charts = {};
// What the browser test reads: how often the charts were drawn, the data, the charts.
window.dashboard = { draws: 0, last: null, charts };

function chart(id, names, data, unit) {
  const key = id + ":" + names.join("|");
  const element = document.getElementById(id);
  if (!charts[id] || charts[id].key !== key) {
    if (charts[id]) charts[id].plot.destroy();
    const series = [{}].concat(names.map((name, i) => ({
      label: name, stroke: COLOURS[i % COLOURS.length], width: 1.5, spanGaps: true,
      value: (u, v) => v == null ? "-" : v.toFixed(2) + unit,
    })));
    const options = { width: Math.max(480, element.clientWidth), height: 220, series,
                      axes: [{}, { size: 60 }] };
    charts[id] = { key, plot: new uPlot(options, data, element) };
  } else {
    charts[id].plot.setData(data);
  }
}

function table(pools) {
  const rows = ["<tr><th>pool</th><th>target</th><th>health</th><th>breaker</th><th>in flight</th><th>openings</th></tr>"];
  for (const [pool, targets] of Object.entries(pools)) {
    for (const t of targets) {
      rows.push(`<tr><td>${pool}</td><td>${t.url}</td><td class="${t.state}">${t.state}</td>` +
                `<td class="${t.circuit}">${t.circuit}</td><td>${t.in_flight}</td><td>${t.opens}</td></tr>`);
    }
  }
  document.getElementById("pools").innerHTML = rows.join("");
}

function waterfalls(traces) {
  const parts = [];
  for (const trace of traces) {
    const total = Math.max(trace.duration_ms, 0.001);
    parts.push(`<div class="trace"><b>${trace.name}</b> ${trace.duration_ms.toFixed(2)} ms ` +
               `<small>${trace.trace_id}</small>`);
    for (const span of trace.spans) {
      const left = 100 * span.offset_ms / total, width = Math.max(0.5, 100 * span.duration_ms / total);
      const detail = Object.entries(span.attributes)
        .filter(([k]) => k.startsWith("gateway.") || k === "error.type" || k === "http.response.status_code")
        .map(([k, v]) => `${k.replace("gateway.", "")}=${v}`).join(" ");
      parts.push(`<div class="bar"><span class="${span.error ? "error" : ""}" style="left:${left}%;width:${width}%"></span>` +
                 `<em style="left:${Math.min(left + width, 70) + 1}%">${span.name} ${span.duration_ms.toFixed(2)} ms ${detail}</em></div>`);
    }
    parts.push("</div>");
  }
  document.getElementById("traces").innerHTML = parts.join("") || "<p>none yet</p>";
}

function draw(d) {
  const routes = Object.keys(d.routes);
  const pick = (field) => routes.map((r) => d.routes[r][field]);
  chart("rps", routes, [d.times, ...pick("rps")], "/s");
  chart("latency", routes.flatMap((r) => [r + " p50", r + " p99"]),
        [d.times, ...routes.flatMap((r) => [d.routes[r].p50_ms, d.routes[r].p99_ms])], " ms");
  chart("errors", routes, [d.times, ...pick("error_rate").map((s) => s.map((v) => v == null ? null : 100 * v))], " %");
  chart("decisions", ["cache hit ratio %", "auth refused/s", "rate limit admitted/s", "rate limited/s"],
        [d.times, d.cache_hit_ratio.map((v) => v == null ? null : 100 * v), d.auth_refused,
         d.ratelimit_admitted, d.ratelimit_limited], "");
  table(d.pools);
  waterfalls(d.traces);
  document.getElementById("who").textContent = `pid ${d.pid}, every ${d.every} s`;
  window.dashboard.draws += 1;
  window.dashboard.last = d;
}

async function poll() {
  try {
    const response = await fetch("/dashboard/data", { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    draw(await response.json());
    document.getElementById("stale").textContent = "";
  } catch (error) {
    document.getElementById("stale").textContent = `(not updating: ${error.message})`;
  }
  setTimeout(poll, 2000);
}

poll();
