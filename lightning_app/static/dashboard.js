// The clf service dashboard: polls /dashboard/data every two seconds and draws it (uPlot for the time series).
// Every number an element shows carries a data-value attribute with the raw value, which the browser tests read.
"use strict";

const POLL_MS = 2000;
const HISTORY = 150; // points kept per series: five minutes at one poll every two seconds
const COLORS = ["#1f6feb", "#d4761c", "#2da44e", "#a371f7", "#cf222e", "#6e7781"];
const history = { t: [], versions: {} };
const charts = {};

function $(id) { return document.getElementById(id); }

function fmt(value, digits = 1) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return Number(value).toFixed(digits);
}

function pct(value) {
  return value === null || value === undefined ? "–" : `${(100 * value).toFixed(1)} %`;
}

function setValue(element, text, raw) {
  element.textContent = text;
  element.dataset.value = raw === null || raw === undefined ? "" : String(raw);
}

function cell(row, text, raw, cls) {
  const td = document.createElement("td");
  setValue(td, text, raw);
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.round(seconds);
  return s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
}

function when(epoch) {
  return new Date(epoch * 1000).toLocaleTimeString();
}

function renderCards(data) {
  const rollout = data.rollout || {};
  setValue($("replica"), data.replica ? `replica ${data.replica}` : "", data.replica);
  setValue($("updated"), `updated ${when(data.at)}`, data.at);
  setValue($("live"), data.live_version, data.live_version);
  const candidate = rollout.phase && rollout.phase !== "idle" ? rollout.candidate : null;
  setValue($("candidate"), candidate || "none", candidate);
  const split = Object.entries(data.traffic_shares)
    .map(([version, share]) => `${version} ${(100 * share).toFixed(0)} %`).join(" / ");
  setValue($("split"), split, JSON.stringify(data.traffic_shares));
  setValue($("phase"), rollout.phase || "no rollouts here", rollout.phase);
  setValue($("stage"), rollout.stage === null || rollout.stage === undefined ? "–" : `${rollout.stage} %`,
           rollout.stage);
  const left = rollout.phase === "canary" || rollout.phase === "watching" ? rollout.time_left_s : null;
  setValue($("time-left"), left === null || left === undefined ? "" : `${age(left)} left of the stage`, left);
  setValue($("lease"), rollout.lease || "–", rollout.lease);
}

function renderGates(gates) {
  const section = $("gates-section");
  section.hidden = !gates;
  if (!gates) return;
  const body = $("gates").querySelector("tbody");
  body.replaceChildren();
  const limits = gates.limits || {};
  const rows = [
    ["canary requests", gates.canary_requests, `≥ ${limits.min_requests}`, gates.canary_requests >= limits.min_requests,
     String(gates.canary_requests), "gate-requests"],
    ["canary error rate", gates.canary_error_rate, `< ${pct(limits.error_rate)}`,
     gates.canary_error_rate === null || gates.canary_error_rate < limits.error_rate, pct(gates.canary_error_rate),
     "gate-errors"],
    [`model latency p95 (${gates.latency_basis || "not compared yet"})`, gates.canary_p95_ms,
     limits.p95_ms === null || limits.p95_ms === undefined ? "judged when the stage ends" : `< ${fmt(limits.p95_ms, 0)} ms`,
     limits.p95_ms === null || limits.p95_ms === undefined || gates.canary_p95_ms < limits.p95_ms,
     gates.canary_p95_ms === null ? "–" : `${fmt(gates.canary_p95_ms, 0)} ms (production ${fmt(gates.production_p95_ms, 0)})`,
     "gate-latency"],
  ];
  for (const [name, raw, threshold, ok, shown, id] of rows) {
    const row = document.createElement("tr");
    row.id = id;
    cell(row, name);
    cell(row, shown, raw);
    cell(row, threshold);
    cell(row, ok ? "ok" : "breached", ok, ok ? "pass" : "fail");
    body.appendChild(row);
  }
  const verdict = $("gates-verdict");
  setValue(verdict, `verdict now: ${gates.verdict}${gates.reasons.length ? " — " + gates.reasons.join("; ") : ""}`,
           gates.verdict);
  verdict.className = gates.verdict;
}

function renderVersions(data) {
  const body = $("versions").querySelector("tbody");
  body.replaceChildren();
  for (const [version, numbers] of Object.entries(data.versions)) {
    const row = document.createElement("tr");
    row.id = `version-${version}`;
    cell(row, version);
    cell(row, pct(data.traffic_shares[version] || 0), data.traffic_shares[version] || 0);
    cell(row, String(numbers.total), numbers.total).className = "requests";
    cell(row, fmt(numbers.requests_per_s, 2), numbers.requests_per_s);
    cell(row, fmt(numbers.latency_p50_ms), numbers.latency_p50_ms).className = "p50";
    cell(row, fmt(numbers.latency_p95_ms), numbers.latency_p95_ms).className = "p95";
    cell(row, pct(numbers.error_rate), numbers.error_rate).className = "errors";
    cell(row, String(numbers.replicas), numbers.replicas);
    body.appendChild(row);
  }
}

function series(name) {
  return Object.keys(history.versions).map((version, index) => ({
    label: version, stroke: COLORS[index % COLORS.length], width: 2, points: { show: false },
  }));
}

function plot(id, key, scale) {
  const versions = Object.keys(history.versions);
  const rows = [history.t, ...versions.map((v) => history.versions[v][key])];
  const element = $(id);
  const existing = charts[id];
  if (existing && existing.series.length === versions.length + 1) {
    existing.setData(rows);
    return;
  }
  if (existing) existing.destroy();
  const width = Math.max(element.clientWidth || 400, 300);
  charts[id] = new uPlot(
    { width, height: 180, scales: { x: { time: true }, y: scale || {} }, series: [{}, ...series(key)],
      axes: [{}, { size: 50 }] },
    rows,
    element,
  );
}

function remember(data) {
  history.t.push(data.at);
  for (const version of Object.keys(data.versions)) {
    if (!history.versions[version]) {
      history.versions[version] = { rps: history.t.slice(0, -1).map(() => null), p50: [], p95: [], errors: [] };
      for (const key of ["p50", "p95", "errors"]) history.versions[version][key] = history.versions[version].rps.slice();
    }
  }
  for (const [version, kept] of Object.entries(history.versions)) {
    const numbers = data.versions[version] || {};
    kept.rps.push(numbers.requests_per_s ?? null);
    kept.p50.push(numbers.latency_p50_ms ?? null);
    kept.p95.push(numbers.latency_p95_ms ?? null);
    kept.errors.push(numbers.error_rate ?? null);
  }
  if (history.t.length > HISTORY) {
    history.t.shift();
    for (const kept of Object.values(history.versions)) for (const key of Object.keys(kept)) kept[key].shift();
  }
}

function renderCharts() {
  plot("chart-rps", "rps");
  plot("chart-p95", "p95");
  plot("chart-p50", "p50");
  plot("chart-errors", "errors", { range: [0, 1] });
  document.body.dataset.charts = String(history.t.length);
}

function renderConfidence(data) {
  const container = $("confidence");
  container.replaceChildren();
  const bounds = data.confidence_bounds;
  const holder = document.createElement("div");
  holder.className = "bars";
  for (const [version, numbers] of Object.entries(data.versions)) {
    const counts = numbers.confidence;
    const total = counts.reduce((a, b) => a + b, 0);
    const box = document.createElement("div");
    box.className = "bar-version";
    box.id = `confidence-${version}`;
    box.dataset.value = String(total);
    const title = document.createElement("h3");
    title.textContent = `${version}: ${total} answers`;
    box.appendChild(title);
    const peak = Math.max(1, ...counts);
    bounds.forEach((upper, index) => {
      const lower = index === 0 ? 0 : bounds[index - 1];
      const row = document.createElement("div");
      row.className = "bar-row";
      const label = document.createElement("span");
      label.className = "bucket";
      label.textContent = `${lower.toFixed(2)}–${upper.toFixed(2)}`;
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = `${(160 * counts[index]) / peak}px`;
      const count = document.createElement("span");
      count.textContent = String(counts[index]);
      row.append(label, bar, count);
      box.appendChild(row);
    });
    holder.appendChild(box);
  }
  container.appendChild(holder);
}

function renderLog(id, entries, line) {
  const list = $(id);
  list.replaceChildren();
  for (const entry of entries.slice().reverse()) {
    const item = document.createElement("li");
    item.textContent = line(entry);
    list.appendChild(item);
  }
  if (!entries.length) {
    const item = document.createElement("li");
    item.className = "muted";
    item.textContent = "none yet";
    list.appendChild(item);
  }
}

function renderExperiment(experiment) {
  const box = $("experiment");
  if (!experiment) {
    box.textContent = "none running";
    return;
  }
  const test = experiment.test;
  const arms = ["control", "treatment"].map((arm) => {
    const a = experiment[arm] || {};
    const interval = a.accuracy_ci ? ` [${fmt(a.accuracy_ci[0], 3)}, ${fmt(a.accuracy_ci[1], 3)}]` : "";
    return `${arm} ${a.version || ""}: accuracy ${fmt(a.accuracy, 3)}${interval} on ${a.with_feedback ?? 0} with feedback`;
  });
  const p = test ? `difference ${fmt(test.difference, 3)} [${fmt(test.ci_low, 3)}, ${fmt(test.ci_high, 3)}], p = ${fmt(test.p_value, 4)}`
    : "too little feedback to test";
  box.textContent = `experiment ${experiment.experiment_id}: ${arms.join("; ")}; ${p}; ${experiment.recommendation}`;
}

function interval(e) {
  return e ? `${fmt(e.value, 3)} [${fmt(e.low, 3)}, ${fmt(e.high, 3)}]` : "–";
}

function renderQuality(quality) {
  const body = $("quality").querySelector("tbody");
  body.replaceChildren();
  if (!quality) return;
  const measured = {};
  for (const w of quality.measured || []) measured[w.version] = w;
  for (const [version, q] of Object.entries(quality.versions)) {
    const last = q.last_window;
    const m = measured[version];
    const row = document.createElement("tr");
    cell(row, version);
    if (!q.reference) cell(row, "no reference sample");
    else if (!last) cell(row, `first window: ${q.current.papers} of ${quality.window_papers}`);
    else cell(row, last.alarm ? `ALARM (${last.reasons.join(", ")})` : "none", last.alarm, last.alarm ? "fail" : "pass");
    cell(row, last ? fmt(last.mmd.p_value, 4) : "–", last ? last.mmd.p_value : null);
    const scope = last && last.out_of_scope;
    cell(row, scope ? `${fmt(100 * scope.share, 1)} % (ref ${fmt(100 * scope.reference_share, 1)} %)` : `${q.out_of_scope} of ${q.papers}`,
      scope ? scope.share : q.out_of_scope);
    cell(row, last ? fmt(last.class_mix.psi, 3) : "–");
    cell(row, last ? interval(last.estimated_accuracy) : "–");
    cell(row, m && m.measured ? interval(m.measured.accuracy) : "–");
    cell(row, m ? `${m.labelled} of ${m.papers} (${fmt(100 * m.coverage, 1)} %)` : "–");
    cell(row, `${q.windows} (${q.alarms} alarmed)`);
    body.appendChild(row);
  }
}

function renderRegistry(entries) {
  const body = $("registry").querySelector("tbody");
  body.replaceChildren();
  for (const entry of entries) {
    const row = document.createElement("tr");
    cell(row, entry.version);
    cell(row, entry.production ? "yes" : "", entry.production);
    cell(row, entry.created_at ? String(entry.created_at).slice(0, 19) : "–");
    cell(row, Object.entries(entry.metrics).map(([k, v]) => `${k} ${fmt(v, 4)}`).join(", ") || "–");
    body.appendChild(row);
  }
}

function render(data) {
  renderCards(data);
  renderGates(data.gates);
  renderVersions(data);
  remember(data);
  renderCharts();
  renderConfidence(data);
  renderLog("decisions", data.decisions, (d) => `${when(d.at)} ${d.action} ${d.version || ""}${d.stage ? ` (${d.stage} %)` : ""}: ${d.reason}`);
  renderLog("alerts", data.alerts, (a) => `${when(a.at)} [${a.level}] ${a.title}: ${a.message}`);
  renderExperiment(data.experiment);
  renderQuality(data.quality);
  renderRegistry(data.registry);
  $("actions").hidden = !data.actions.rollback;
  document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
}

async function poll() {
  try {
    const response = await fetch("/dashboard/data", { cache: "no-store" });
    if (!response.ok) throw new Error(`${response.status}`);
    render(await response.json());
  } catch (err) {
    setValue($("updated"), `not updated: ${err.message}`, null);
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

$("rollback").addEventListener("click", async () => {
  const result = $("action-result");
  const response = await fetch("/dashboard/rollback", {
    method: "POST", headers: { Authorization: `Bearer ${$("token").value}` },
  });
  const body = await response.json();
  result.textContent = response.ok ? `rollback requested: ${body.reason}` : `refused (${response.status}): ${body.error}`;
});

poll();
