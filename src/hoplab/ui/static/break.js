// The break-and-fix page: the fault catalogue, inject (target, duration, parameters) and halt,
// the active faults with their countdown (live from the status events), drills and diagnose.
import { api, el } from "./api.js";
import { DiagnosePanel } from "./diagnose.js";
import { DrillPanel } from "./drill.js";
import { TopologyGraph } from "./graph.js";

export class BreakPage {
  constructor(root, lab) {
    this.root = root;
    this.lab = lab;
    this.graph = new TopologyGraph(root.querySelector("#break-graph"), lab.graph,
      { onNode: (n) => { root.querySelector("#fault-target").value = n; } });
    this.catalogue = [];
    this.drills = new DrillPanel(root);
    this.diagnose = new DiagnosePanel(root, lab, this.graph);
    root.querySelector("#fault-form").addEventListener("submit", (e) => { e.preventDefault(); this.inject(); });
    root.querySelector("#fault-halt").addEventListener("click", () => this.halt());
    root.querySelector("#fault-name").addEventListener("change", () => this.describe());
    const targets = root.querySelector("#fault-targets");
    for (const node of lab.graph.nodes) {
      targets.append(el("option", { value: node.name }));
      for (const i of node.interfaces) targets.append(el("option", { value: `${node.name}:${i.network}` }));
    }
  }

  async shown() {
    await this.drills.shown();
    if (this.catalogue.length) return;
    const { faults } = await api("/api/chaos");
    this.catalogue = faults;
    const select = this.root.querySelector("#fault-name");
    select.replaceChildren(...faults.map((f) => el("option", { value: f.name, text: `${f.family} \u00b7 ${f.name}` })));
    this.root.querySelector("#fault-catalogue").replaceChildren(el("table", { class: "compact" },
      el("tr", {}, ["fault", "family", "target", "parameters", "what it does"].map((h) => el("th", { text: h }))),
      faults.map((f) => el("tr", { "data-fault": f.name, onclick: () => { select.value = f.name; this.describe(); } },
        el("td", { text: f.name }), el("td", { text: f.family }), el("td", { text: f.target }),
        el("td", { text: Object.entries(f.params).map(([k, v]) => `${k}=${v}`).join(" ") }), el("td", { text: f.description })))));
    this.describe();
  }

  describe() {
    const f = this.catalogue.find((x) => x.name === this.root.querySelector("#fault-name").value);
    if (!f) return;
    this.root.querySelector("#fault-about").textContent = `${f.description} \u2014 target ${f.target}`;
    this.root.querySelector("#fault-params").value = Object.entries(f.params).map(([k, v]) => `${k}=${v}`).join(" ");
  }

  update(snapshot) {
    this.graph.setStatus(snapshot);
    const box = this.root.querySelector("#active-faults");
    const faults = snapshot.faults || [];
    box.replaceChildren(faults.length ? el("ul", {}, faults.map((f) => el("li", { "data-fault-id": f.id },
      el("b", { text: f.fault }), ` on ${f.node}${f.iface ? ":" + f.iface : ""}: ${f.symptom} `,
      el("span", { class: "countdown", "data-deadline": f.deadline })))) : el("p", { class: "muted", text: "no active fault" }));
  }

  async inject() {
    const errorBox = this.root.querySelector("#fault-error");
    errorBox.textContent = "";
    const params = this.root.querySelector("#fault-params").value.trim();
    const body = { fault: this.root.querySelector("#fault-name").value, target: this.root.querySelector("#fault-target").value.trim(),
      duration: Number(this.root.querySelector("#fault-duration").value), params: params ? params.split(/\s+/) : [] };
    const button = this.root.querySelector("#fault-inject");
    button.disabled = true;
    try {
      const entry = await api("/api/chaos/inject", { json: body });
      this.root.querySelector("#fault-result").textContent = `injected ${entry.id} ${entry.fault} on ${entry.node}: ${entry.symptom}`;
    } catch (error) {
      errorBox.textContent = error.message;
    } finally {
      button.disabled = false;
    }
  }

  async halt() {
    const errorBox = this.root.querySelector("#fault-error");
    errorBox.textContent = "";
    try {
      const { reverted } = await api("/api/chaos/halt", { json: {} });
      this.root.querySelector("#fault-result").textContent = reverted.length
        ? reverted.map((e) => `reverted ${e.id} ${e.fault} on ${e.node}`).join("; ") : "nothing to revert";
    } catch (error) {
      errorBox.textContent = error.message;
    }
  }
}
