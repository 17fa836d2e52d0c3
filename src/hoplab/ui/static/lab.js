// The lab page: the live graph and, for a clicked node, its service, sockets, logs and faults.
import { api, el } from "./api.js";
import { TopologyGraph, health } from "./graph.js";

export class LabPage {
  constructor(root, lab) {
    this.root = root;
    this.panel = root.querySelector("#node-panel");
    this.summary = root.querySelector("#lab-summary");
    this.graph = new TopologyGraph(root.querySelector("#lab-graph"), lab.graph, { onNode: (n) => this.open(n) });
    this.current = null;
    this.snapshot = lab.status;
    this.update(lab.status);
  }

  update(snapshot) {
    this.snapshot = snapshot;
    this.graph.setStatus(snapshot);
    const nodes = Object.values(snapshot.nodes || {});
    const healthy = nodes.filter((s) => health(s) === "healthy").length;
    const faults = (snapshot.faults || []).length;
    this.summary.replaceChildren(
      el("span", { class: healthy === nodes.length && nodes.length ? "ok" : "bad", id: "healthy-count",
        text: `${healthy} of ${nodes.length} nodes healthy` }),
      faults ? el("span", { class: "bad", text: ` \u00b7 ${faults} active fault${faults > 1 ? "s" : ""}` }) : "",
      snapshot.error ? el("span", { class: "bad", text: ` \u00b7 ${snapshot.error}` }) : "");
    if (this.current) this.renderFaultsAndHealth();
  }

  async open(name) {
    this.current = name;
    this.graph.select(name);
    this.panel.replaceChildren(el("h2", { text: name }), el("p", { class: "muted", text: "asking the node\u2026" }));
    let detail;
    try {
      detail = await api(`/api/nodes/${encodeURIComponent(name)}`);
    } catch (error) {
      this.panel.replaceChildren(el("h2", { text: name }), el("p", { class: "error", text: error.message }));
      return;
    }
    if (this.current !== name) return;
    this.detail = detail;
    const listeners = detail.listeners
      ? el("table", { class: "compact" },
          el("tr", {}, el("th", { text: "listening" }), el("th", { text: "backlog" }), el("th", { text: "queue" }), el("th", { text: "process" })),
          detail.listeners.map((l) => el("tr", {}, el("td", { text: `${l.address}:${l.port}` }),
            el("td", { text: l.backlog ?? "-" }), el("td", { text: l.accept_queue }), el("td", { text: l.processes.join(", ") || "-" }))))
      : el("p", { class: "muted", text: `sockets: ${detail.sockets_error || "none"}` });
    this.panel.replaceChildren(
      el("h2", { text: name }),
      el("p", {}, el("b", { text: detail.service }), " \u00b7 ", el("span", { id: "node-health" })),
      el("h3", { text: "Interfaces" }),
      el("ul", {}, detail.interfaces.map((i) => el("li", { text: `${i.network}: ${(detail.addresses || {})[i.network] || i.address}` }))),
      el("h3", { text: "Active faults" }), el("div", { id: "node-faults" }),
      el("h3", { text: `Listening sockets${detail.connections !== undefined ? ` (${detail.connections} connections)` : ""}` }), listeners,
      el("h3", { text: "Recent log lines" }),
      el("pre", { class: "logs", text: (detail.logs || []).join("\n") || detail.logs_error || "(none)" }));
    this.renderFaultsAndHealth();
  }

  renderFaultsAndHealth() {
    const status = (this.snapshot.nodes || {})[this.current];
    const word = this.panel.querySelector("#node-health");
    if (word) {
      word.textContent = status ? `${status.state}, ${health(status)}` : "no status";
      word.className = health(status) === "healthy" ? "ok" : "bad";
    }
    const box = this.panel.querySelector("#node-faults");
    if (!box) return;
    const faults = (this.snapshot.faults || []).filter((f) => f.node === this.current);
    box.replaceChildren(faults.length ? el("ul", {}, faults.map((f) => el("li", {},
      el("b", { text: f.fault }), f.iface ? ` on ${f.iface}` : "", `: ${f.symptom} `,
      el("span", { class: "countdown", "data-deadline": f.deadline })))) : el("p", { class: "muted", text: "none" }));
  }
}
