// Diagnose on the break-and-fix page: the CLI's hop-by-hop walk of the page load from a client;
// the first broken hop, its reason and evidence, and the hop marked on the graph.
import { api, el } from "./api.js";

export class DiagnosePanel {
  constructor(root, lab, graph) {
    this.root = root;
    this.graph = graph;
    this.box = root.querySelector("#diagnose-box");
    const from = root.querySelector("#diagnose-from");
    for (const c of lab.graph.clients) from.append(el("option", { value: c, text: c }));
    root.querySelector("#diagnose-form").addEventListener("submit", (e) => { e.preventDefault(); this.run(); });
  }

  async run() {
    const errorBox = this.root.querySelector("#diagnose-error");
    const progress = this.root.querySelector("#diagnose-progress");
    const button = this.root.querySelector("#diagnose-run");
    errorBox.textContent = "";
    button.disabled = true;
    const started = performance.now();
    const tick = setInterval(() => { progress.textContent = `checking hop by hop\u2026 ${((performance.now() - started) / 1000).toFixed(0)} s`; }, 250);
    this.graph.markBroken(null);
    try {
      this.show(await api("/api/diagnose", { json: { from: this.root.querySelector("#diagnose-from").value || null } }));
    } catch (error) {
      errorBox.textContent = error.message;
    } finally {
      clearInterval(tick);
      progress.textContent = "";
      button.disabled = false;
    }
  }

  show(report) {
    this.graph.markBroken(report.broken_node, report.broken_links);
    const rows = report.checks.map((c) => el("tr", { "data-hop": c.hop },
      el("td", { text: c.hop }), el("td", { class: c.ok ? "ok" : "bad", text: c.ok ? "ok" : "BROKEN" }), el("td", { text: c.what })));
    this.box.dataset.healthy = report.healthy ? "1" : "0";
    this.box.replaceChildren(
      report.healthy ? el("p", { class: "ok", id: "diagnose-verdict", text: `every hop works from ${report.client}` })
        : el("p", { class: "bad", id: "diagnose-verdict" }, "first broken hop: ", el("b", { id: "diagnose-hop", text: report.broken_hop }),
          ` (${report.broken_node}) \u2014 ${report.reason}`),
      el("table", { class: "compact checks" }, rows),
      report.evidence ? el("pre", { class: "evidence", text: report.evidence }) : "",
      report.kernel_drops.length ? el("pre", { class: "evidence", text: "what the kernel dropped or refused while it was checked again:\n" + report.kernel_drops.join("\n") }) : "");
  }
}
