// The visit page: type a URL, press Enter, and the trace arrives: the stage waterfall, a
// sequence diagram fitted to the window (lanes per node; zoom; full labels on hover), the
// layers of the selected packet, and step-through that lights the packet's link on the graph.
import { api, el, ms } from "./api.js";
import { TopologyGraph } from "./graph.js";
import { drawLayers } from "./layers.js";

const ROW_H = 20, TOP = 34, LEFT = 74, RIGHT = 60, MIN_LANE = 64;
const BANDS = ["#dbeafe", "#dcfce7", "#fef9c3", "#fae8ff", "#ffedd5", "#e0f2fe", "#f1f5f9", "#fee2e2", "#ecfccb"];

export class VisitPage {
  constructor(root, lab) {
    this.root = root;
    this.lab = lab;
    this.order = [...lab.graph.nodes].sort((a, b) => a.x - b.x || a.y - b.y).map((n) => n.name);
    this.graph = new TopologyGraph(root.querySelector("#visit-graph"), lab.graph);
    this.zoom = 1;
    this.view = null;
    this.row = -1;
    const form = root.querySelector("#visit-form");
    form.addEventListener("submit", (e) => { e.preventDefault(); this.start(); });
    const from = root.querySelector("#visit-from");
    for (const c of lab.graph.clients) from.append(el("option", { value: c, text: c }));
    root.querySelector("#visit-url").value = lab.graph.domain ? `https://www.${lab.graph.domain}/` : "";
    root.querySelector("#step-prev").addEventListener("click", () => this.step(-1));
    root.querySelector("#step-next").addEventListener("click", () => this.step(1));
    root.querySelector("#zoom-in").addEventListener("click", () => this.setZoom(this.zoom * 1.25));
    root.querySelector("#zoom-out").addEventListener("click", () => this.setZoom(this.zoom / 1.25));
    root.querySelector("#zoom-fit").addEventListener("click", () => this.setZoom(1));
    root.querySelector("#refresh-traces").addEventListener("click", () => this.listTraces());
    root.querySelector("#sequence").addEventListener("wheel", (e) => {
      if (!e.ctrlKey) return;
      e.preventDefault();
      this.setZoom(this.zoom * (e.deltaY < 0 ? 1.1 : 1 / 1.1));
    }, { passive: false });
    window.addEventListener("resize", () => this.view && this.drawSequence());
    document.addEventListener("keydown", (e) => {
      if (!root.classList.contains("active") || !this.view) return;
      if (["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement?.tagName)) return;
      if (e.key === "ArrowRight" || e.key === "ArrowDown") { e.preventDefault(); this.step(1); }
      if (e.key === "ArrowLeft" || e.key === "ArrowUp") { e.preventDefault(); this.step(-1); }
    });
  }

  update(snapshot) {
    this.graph.setStatus(snapshot);
  }

  shown() {
    this.listTraces();
    if (this.view) this.drawSequence();
  }

  async start() {
    const url = this.root.querySelector("#visit-url").value.trim();
    const from = this.root.querySelector("#visit-from").value || null;
    const renew = this.root.querySelector("#visit-renew").checked;
    const errorBox = this.root.querySelector("#visit-error");
    const progress = this.root.querySelector("#visit-progress");
    const button = this.root.querySelector("#visit-go");
    errorBox.textContent = "";
    button.disabled = true;
    const started = performance.now();
    const tick = setInterval(() => {
      progress.textContent = `capturing on every node while ${from || "the client"} loads ${url}\u2026 ${((performance.now() - started) / 1000).toFixed(1)} s`;
    }, 100);
    try {
      const result = await api("/api/visits", { json: { url, from, renew } });
      performance.mark("visit-response");  // bench-ui: from here to "trace-drawn"
      clearInterval(tick);
      progress.textContent = "";
      this.show(result);
      this.listTraces();
    } catch (error) {
      clearInterval(tick);
      progress.textContent = "";
      errorBox.textContent = error.message;
    } finally {
      button.disabled = false;
    }
  }

  async open(traceId) {
    const errorBox = this.root.querySelector("#visit-error");
    errorBox.textContent = "";
    try {
      this.show(await api(`/api/traces/${traceId}`));
    } catch (error) {
      errorBox.textContent = error.message;
    }
  }

  async listTraces() {
    const box = this.root.querySelector("#past-traces");
    try {
      const { traces } = await api("/api/traces");
      box.replaceChildren(traces.length ? el("ul", {}, [...traces].reverse().map((t) => el("li", {},
        el("a", { href: `#visit/${t.trace_id}`, "data-trace": t.trace_id, text: t.trace_id.slice(0, 12),
          onclick: (e) => { e.preventDefault(); this.open(t.trace_id); } }),
        ` ${t.status || "-"} \u00b7 ${t.hops} records \u00b7 ${t.url}`))) : el("p", { class: "muted", text: "no traces yet" }));
    } catch (error) {
      box.replaceChildren(el("p", { class: "error", text: error.message }));
    }
  }

  show(result) {
    const t = result.trace;
    this.view = result;
    this.row = -1;
    const v = result.visit;
    const summary = this.root.querySelector("#visit-summary");
    summary.replaceChildren(
      el("div", {}, el("b", { text: t.url }), ` \u2014 status ${t.status || "-"}`,
        v ? ` \u00b7 served by ${v.served_by || "-"} \u00b7 cache ${v.cache || "-"} \u00b7 ${v.timings_ms?.total ?? "?"} ms` : "",
        ` \u00b7 ${t.hops.length} hops, ${result.messages.length} packets \u00b7 trace `, el("code", { id: "trace-id", text: t.trace_id }),
        " \u00b7 ", el("a", { href: `/api/traces/${t.trace_id}?format=json`, download: `trace-${t.trace_id}.json`, id: "download-json", text: "JSON" }),
        " \u00b7 ", el("a", { href: `/api/traces/${t.trace_id}?format=pcapng`, download: `trace-${t.trace_id}.pcapng`, id: "download-pcapng", text: "pcapng" })),
      ...(result.notes || []).map((n) => el("div", { class: n.startsWith("INCOMPLETE") ? "error" : "muted", text: n })),
      v && v.error ? el("div", { class: "error", text: v.error }) : "");
    this.drawWaterfall();
    this.drawSequence();
    this.root.querySelector("#layers").replaceChildren(el("p", { class: "muted", text: "Click a packet, or step with \u2190 \u2192." }));
    this.graph.light([]);
    this.root.querySelector("#step-info").textContent = `${result.messages.length} packets`;
    // bench-ui: after the frame that paints it; from the visit's own end (curl done, in the node).
    const finished = v && v.finished_at ? v.finished_at * 1000 : null;
    requestAnimationFrame(() => setTimeout(() => performance.mark("trace-drawn", { detail: { visit_finished_ms: finished } }), 0));
  }

  drawWaterfall() {
    const t = this.view.trace;
    const box = this.root.querySelector("#waterfall");
    if (!t.hops.length) { box.replaceChildren(el("p", { class: "muted", text: "no packets captured" })); return; }
    const start = t.hops[0].ts_ns, span = Math.max(t.hops[t.hops.length - 1].ts_ns - start, 1);
    box.replaceChildren(...t.stages.map((s, i) => el("div", { class: "stage", "data-stage": s.name, title: s.note || s.name,
      onclick: () => this.select(this.rowOfHop(s.first_hop)) },
      el("span", { class: "stage-name", text: s.name }),
      el("span", { class: "stage-track" }, el("span", { class: "stage-bar", style:
        `left:${((s.start_ns - start) / span * 100).toFixed(2)}%;width:${Math.max((s.end_ns - s.start_ns) / span * 100, 0.4).toFixed(2)}%;background:${BANDS[i % BANDS.length]}` })),
      el("span", { class: "stage-ms", text: `${s.duration_ms.toFixed(3)} ms` }),
      el("span", { class: "stage-note", text: `${s.hops} hops${s.note ? " \u00b7 " + s.note : ""}` }))));
  }

  rowOfHop(index) {
    return this.view.messages.findIndex(([a, b]) => a === index || b === index);
  }

  lanes() {
    const seen = new Set(this.view.trace.hops.map((h) => h.node));
    return [...this.order.filter((n) => seen.has(n)), ...[...seen].filter((n) => !this.order.includes(n))];
  }

  drawSequence() {
    const t = this.view.trace, messages = this.view.messages;
    const box = this.root.querySelector("#sequence");
    const lanes = this.lanes();
    const available = Math.max(box.clientWidth - 4, 320) * this.zoom;
    const laneW = Math.max((available - LEFT - RIGHT) / Math.max(lanes.length - 1, 1), MIN_LANE);
    const width = LEFT + RIGHT + laneW * Math.max(lanes.length - 1, 1);
    const rowH = ROW_H * Math.min(Math.max(this.zoom, 0.75), 2);
    const height = TOP + rowH * (messages.length + 1);
    const x = new Map(lanes.map((n, i) => [n, LEFT + i * laneW]));
    const start = t.hops.length ? t.hops[0].ts_ns : 0;
    const svg = el("svg", { id: "sequence-svg", width, height, class: "sequence" },
      el("defs", {}, el("marker", { id: "arrow", markerWidth: 8, markerHeight: 8, refX: 7, refY: 3, orient: "auto" },
        el("path", { d: "M0,0 L7,3 L0,6 z", fill: "context-stroke" }))));
    const rowOf = new Map();
    messages.forEach(([a, b], row) => { rowOf.set(a, row); if (b !== null) rowOf.set(b, row); });
    t.stages.forEach((s, i) => {
      const rows = [];
      for (let h = s.first_hop; h <= s.last_hop; h++) if (rowOf.has(h)) rows.push(rowOf.get(h));
      if (!rows.length) return;
      const top = TOP + rowH * Math.min(...rows) - 3, bottom = TOP + rowH * Math.max(...rows) + rowH - 3;
      svg.append(el("rect", { class: "band", x: 0, y: top, width, height: bottom - top, fill: BANDS[i % BANDS.length] },
        el("title", { text: `${s.name}: ${s.duration_ms} ms, ${s.hops} hops` })),
        el("text", { class: "band-label", x: width - 4, y: top + 11, "text-anchor": "end", text: s.name }));
    });
    for (const lane of lanes) {
      svg.append(el("line", { class: "lane", x1: x.get(lane), y1: TOP - 8, x2: x.get(lane), y2: height }),
        el("text", { class: "lane-name", x: x.get(lane), y: TOP - 14, "text-anchor": "middle", text: lane }));
    }
    messages.forEach(([a, b], row) => {
      const first = t.hops[a], second = b === null ? null : t.hops[b];
      const y = TOP + rowH * row + rowH / 2;
      const nat = !!(first.translated || (second && second.translated));
      const routed = !!(first.forwarded || (second && second.forwarded));
      const g = el("g", { class: `msg${nat ? " nat" : ""}${routed ? " routed" : ""}${first.decrypted ? " tls" : ""}`, "data-row": row, "data-from": first.node,
        "data-to": second ? second.node : "", "data-nat": nat ? "1" : null, onclick: () => this.select(row) });
      // decrypted, the arrow says what the TLS record carried ("TLS: HTTP GET /"), as render.to_html does
      const said = first.decrypted ? `TLS: ${first.decrypted.summary}` : first.summary;
      const full = `+${ms(first.ts_ns, start)} ms  ${first.node}:${first.iface} ${first.direction}  ${said}` +
        (second ? `  \u2192 ${second.node}:${second.iface}` : "");
      g.append(el("rect", { class: "hit", x: 0, y: y - rowH / 2, width, height: rowH }), el("title", { text: full }));
      g.append(el("text", { class: "ms", x: 3, y: y + 4, text: ms(first.ts_ns, start) }));
      if (second && second.node !== first.node) {
        const x1 = x.get(first.node), x2 = x.get(second.node);
        g.append(el("line", { class: "arrow", x1, y1: y, x2, y2: y, "marker-end": "url(#arrow)" }));
        g.append(el("text", { class: "label", x: (x1 + x2) / 2, y: y - 3, "text-anchor": "middle", text: fit(said, Math.abs(x2 - x1)) }));
      } else {
        const cx = x.get(first.node);
        const right = cx + 8 + 200 < width;
        g.append(el("circle", { cx, cy: y, r: 3.5 }));
        g.append(el("text", { class: "label", x: right ? cx + 8 : cx - 8, y: y + 4, "text-anchor": right ? "start" : "end",
          text: fit(said, Math.max(laneW - 16, 120)) }));
      }
      svg.append(g);
    });
    box.replaceChildren(svg);
    if (this.row >= 0) this.mark(this.row, false);
  }

  setZoom(zoom) {
    this.zoom = Math.min(Math.max(zoom, 0.5), 6);
    this.root.querySelector("#zoom-level").textContent = `${Math.round(this.zoom * 100)}%`;
    if (this.view) this.drawSequence();
  }

  step(delta) {
    if (!this.view || !this.view.messages.length) return;
    const next = this.row < 0 ? (delta > 0 ? 0 : this.view.messages.length - 1) : this.row + delta;
    this.select(Math.min(Math.max(next, 0), this.view.messages.length - 1));
  }

  select(row) {
    if (!this.view || row < 0) return;
    this.row = row;
    this.mark(row, true);
    const [a, b] = this.view.messages[row];
    const t = this.view.trace, first = t.hops[a], second = b === null ? null : t.hops[b];
    // The link the packet is on: the sender's interface and the receiver's (the same network).
    const links = [`${first.node}|${first.iface}`, ...(second ? [`${second.node}|${second.iface}`] : [])];
    this.graph.light(links, [first.node, ...(second ? [second.node] : [])]);
    this.root.querySelector("#step-info").textContent =
      `packet ${row + 1} / ${this.view.messages.length}: ${first.node} \u2192 ${second ? second.node : "(not seen arriving)"} on ${first.iface}`;
    // The hop that changed something (a router's way out) is the one to draw; else the sender's.
    const shown = second && (second.forwarded || second.translated) && !(first.forwarded || first.translated) ? second : first;
    drawLayers(this.root.querySelector("#layers"), shown, shown === first ? second : first);
  }

  mark(row, scroll) {
    for (const g of this.root.querySelectorAll("#sequence .msg.selected")) g.classList.remove("selected");
    const g = this.root.querySelector(`#sequence .msg[data-row="${row}"]`);
    if (!g) return;
    g.classList.add("selected");
    if (scroll) {
      const box = this.root.querySelector("#sequence");
      const y = TOP + ROW_H * Math.min(Math.max(this.zoom, 0.75), 2) * row;
      if (y < box.scrollTop + 20 || y > box.scrollTop + box.clientHeight - 40) box.scrollTop = y - box.clientHeight / 2;
    }
  }
}

function fit(text, pixels) {
  const chars = Math.max(Math.floor(pixels / 6.6) - 2, 8);
  return text.length <= chars ? text : text.slice(0, chars - 1) + "\u2026";
}
