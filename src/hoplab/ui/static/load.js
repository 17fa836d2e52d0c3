// The load page: start a bounded Locust run (the CLI's choices and limits, checked by the server),
// watch requests/s, p50/p95 and failures live (server-sent "load" events), then the SLO verdict
// and Locust's own HTML report.
import { api, el } from "./api.js";

const CHART_W = 900, CHART_H = 180, PAD = 34;

export class LoadPage {
  constructor(root, lab) {
    this.root = root;
    this.lab = lab;
    this.run = null;
    root.querySelector("#load-form").addEventListener("submit", (e) => { e.preventDefault(); this.start(); });
    const from = root.querySelector("#load-from");
    for (const c of lab.graph.clients) from.append(el("option", { value: c, text: c }));
    this.ready = false;
  }

  update() {}  // the lab's status is not this page's business

  async shown() {
    if (this.ready) return;
    const state = await api("/api/load");
    const $ = (id) => this.root.querySelector(id);
    $("#load-users").value = state.defaults.users;
    $("#load-rate").value = state.defaults.rate;
    $("#load-time").value = state.defaults.time;
    $("#load-shape").append(...state.shapes.map((s) => el("option", { value: s, text: s })));
    this.ready = true;
    this.show(state);
    this.events = new EventSource("/api/load/events");
    this.events.addEventListener("load", (e) => this.show(JSON.parse(e.data)));
  }

  // A number field as typed: a number, null when empty, else the raw text (the server refuses it).
  value(id) {
    const text = this.root.querySelector(id).value.trim();
    if (text === "") return null;
    const n = Number(text);
    return Number.isFinite(n) ? n : text;
  }

  async start() {
    const $ = (id) => this.root.querySelector(id);
    $("#load-error").textContent = "";
    const body = { users: this.value("#load-users"), rate: this.value("#load-rate"),
      time: this.value("#load-time"), shape: $("#load-shape").value || null,
      workers: this.value("#load-workers"), from: $("#load-from").value || null,
      no_cache: $("#load-no-cache").checked, arrival_rate: this.value("#load-arrival-rate"),
      trace_sample: this.value("#load-trace-sample") };
    $("#load-start").disabled = true;
    try {
      this.show({ run: await api("/api/load/start", { json: body }) });
    } catch (error) {
      $("#load-error").textContent = error.message;
      $("#load-start").disabled = !!(this.run && ["starting", "running"].includes(this.run.state));
    }
  }

  show(snapshot) {
    const run = snapshot.run;
    if (!run) return;
    if (this.run && snapshot.version !== undefined && this.lastVersion !== undefined && snapshot.version < this.lastVersion) return;
    this.lastVersion = snapshot.version;
    this.run = run;
    const $ = (id) => this.root.querySelector(id);
    const active = ["starting", "running"].includes(run.state);
    $("#load-start").disabled = active;
    const o = run.options;
    const what = `${o.users} users, ${o.rate}/s, ${o.seconds} s${o.shape ? ", shape " + o.shape : ""}${o.arrival_rate ? `, ${o.arrival_rate} arrivals/s` : ""}${o.workers ? `, ${o.workers} workers` : ""}${o.trace_sample ? `, 1 request in ${o.trace_sample} traced` : ""} from ${run.node}`;
    const state = $("#load-state");
    state.dataset.state = run.state;
    state.className = run.state === "failed" ? "error" : "muted";
    state.replaceChildren(`${run.state}: ${what} `, active ? el("span", { class: "countdown", "data-deadline": run.deadline }) : "",
      run.error ? ` \u2014 ${run.error}` : "");
    const live = run.live;
    const numbers = { "#load-rps": live && live.rps.toFixed(1), "#load-p50": live && live.p50_ms.toFixed(0),
      "#load-p95": live && live.p95_ms.toFixed(0), "#load-failures": live && live.failures,
      "#load-requests": live && live.requests, "#load-users-now": live && live.users };
    for (const [id, text] of Object.entries(numbers)) $(id).textContent = text ?? "-";
    $("#load-rps").dataset.samples = String(run.series.length);
    this.chart(run.series);
    $("#load-said").textContent = run.said.join("\n");
    this.verdict(run);
  }

  verdict(run) {
    const box = this.root.querySelector("#load-verdict");
    const table = this.root.querySelector("#load-endpoints");
    if (run.state !== "done" || !run.slo) {
      box.replaceChildren();
      box.removeAttribute("data-met");
      table.replaceChildren();
      return;
    }
    box.dataset.met = run.slo.met ? "1" : "0";
    box.className = `verdict ${run.slo.met ? "ok" : "bad"}`;
    const report = run.report.files.includes("report.html")
      ? el("a", { id: "load-report", href: `/api/load/runs/${run.id}/report.html`, target: "_blank", rel: "noopener", text: "Locust's report" }) : "";
    box.replaceChildren(run.slo.met ? "SLO met" : `SLO breached: ${run.slo.breaches.join("; ")}`,
      el("span", { class: "muted", text: ` \u00b7 reports/${run.report.folder} \u00b7 ` }), report,
      run.report.files.includes("samples.html") ? el("span", {}, " \u00b7 ",
        el("a", { id: "load-samples", href: `/api/load/runs/${run.id}/samples.html`, target: "_blank", rel: "noopener",
                  text: "the slowest sampled requests, traced" })) : "");
    const rows = [...run.summary.endpoints, { ...run.summary.total, name: "all" }].filter((r) => r && r.name);
    table.replaceChildren(el("table", { class: "compact" },
      el("tr", {}, ["endpoint", "requests", "failures", "throttled (429)", "req/s", "p50", "p95", "p99"].map((h) => el("th", { text: h }))),
      rows.map((r) => el("tr", {}, el("td", { text: r.name }), el("td", { text: r.requests }), el("td", { text: r.failures }),
        el("td", { text: r.throttled ?? 0 }),
        el("td", { text: r.rps.toFixed(1) }), el("td", { text: r.p50_ms.toFixed(0) }), el("td", { text: r.p95_ms.toFixed(0) }),
        el("td", { text: r.p99_ms.toFixed(0) })))));
  }

  chart(series) {
    const svg = this.root.querySelector("#load-chart");
    svg.setAttribute("viewBox", `0 0 ${CHART_W} ${CHART_H}`);
    svg.setAttribute("preserveAspectRatio", "none");
    if (!series.length) { svg.replaceChildren(); return; }
    const t0 = series[0].t, span = Math.max(series[series.length - 1].t - t0, 1);
    const maxRps = Math.max(...series.map((p) => p.rps), 1), maxP95 = Math.max(...series.map((p) => p.p95_ms), 1);
    const x = (p) => PAD + (p.t - t0) / span * (CHART_W - 2 * PAD);
    const y = (v, max) => CHART_H - PAD / 2 - v / max * (CHART_H - PAD);
    const line = (key, max) => series.map((p) => `${x(p).toFixed(1)},${y(p[key], max).toFixed(1)}`).join(" ");
    svg.replaceChildren(
      el("polyline", { class: "rps", points: line("rps", maxRps) }),
      el("polyline", { class: "p95", points: line("p95_ms", maxP95) }),
      el("text", { class: "axis", x: 4, y: 14, text: `${maxRps.toFixed(1)} req/s` }),
      el("text", { class: "axis", x: CHART_W - 4, y: 14, "text-anchor": "end", text: `${maxP95.toFixed(0)} ms` }),
      el("text", { class: "axis", x: CHART_W - 4, y: CHART_H - 4, "text-anchor": "end", text: `${span} s` }));
  }
}
