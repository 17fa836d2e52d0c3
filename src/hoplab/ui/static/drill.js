// Drills on the break-and-fix page: start one (a hidden fault; only the symptom is told), ask for
// hints, check the repair, or give up (the fault and the fix are shown, and the fault reverted).
import { api, el } from "./api.js";

export class DrillPanel {
  constructor(root) {
    this.root = root;
    this.box = root.querySelector("#drill-box");
    this.errorBox = root.querySelector("#drill-error");
    root.querySelector("#drill-form").addEventListener("submit", (e) => { e.preventDefault(); this.start(); });
    root.querySelector("#drill-hint").addEventListener("click", () => this.act("hint"));
    root.querySelector("#drill-check").addEventListener("click", () => this.act("check"));
    root.querySelector("#drill-give-up").addEventListener("click", () => this.act("give-up"));
    this.loaded = false;
  }

  async shown() {
    const state = await api("/api/drills");
    if (!this.loaded) {
      this.root.querySelector("#drill-name").replaceChildren(...state.drills.map((d) =>
        el("option", { value: d.name, text: `${d.difficulty} \u00b7 ${d.name}` })));
      this.root.querySelector("#drill-duration").value = state.default_duration;
      this.loaded = true;
    }
    if (state.current && state.current.state === "active") this.current(state.current);
  }

  current(drill, extra = []) {
    this.box.dataset.state = drill.state;
    this.box.replaceChildren(
      el("p", {}, el("b", { text: `${drill.drill} (${drill.difficulty})` }), ` from ${drill.client}: `,
        el("span", { id: "drill-symptom", text: drill.symptom }), " ",
        drill.state === "active" ? el("span", { class: "countdown", "data-deadline": drill.deadline }) : ""),
      drill.hints.length ? el("ol", { id: "drill-hints" }, drill.hints.map((h) => el("li", { text: h }))) : "",
      ...extra);
    this.drill = drill;
  }

  async start() {
    this.errorBox.textContent = "";
    const duration = Number(this.root.querySelector("#drill-duration").value);
    const body = { drill: this.root.querySelector("#drill-name").value, duration: Number.isFinite(duration) && duration ? duration : null };
    try {
      this.current(await api("/api/drills/start", { json: body }));
    } catch (error) {
      this.errorBox.textContent = error.message;
    }
  }

  async act(action) {
    this.errorBox.textContent = "";
    const buttons = [...this.root.querySelectorAll("#drill-form button")];
    for (const b of buttons) b.disabled = true;
    try {
      const answer = await api(`/api/drills/${action}`, { json: {} });
      if (action === "hint") this.current({ ...this.drill, hints: answer.hints });
      if (action === "check") {
        this.current({ ...this.drill, state: answer.state }, [
          el("p", { id: "drill-said", class: answer.state === "solved" ? "ok" : "bad", text: answer.said }),
          answer.outcomes.length ? el("table", { class: "compact checks" }, answer.outcomes.map((o) => el("tr", {},
            el("td", { class: o.ok ? "ok" : "bad", text: o.ok ? "ok" : "still broken" }),
            el("td", { text: o.what + (o.ok ? "" : `: ${o.reason}`) })))) : ""]);
      }
      if (action === "give-up") {
        this.current({ ...this.drill, state: answer.state }, [
          el("p", { id: "drill-fault" }, el("b", { text: "the fault: " }), answer.fault),
          el("p", { text: answer.fix }), el("p", { text: "the fix:" }),
          el("pre", { class: "evidence", id: "drill-fix", text: answer.commands.join("\n") }),
          el("p", { class: "muted", text: "(reverted now)" })]);
      }
    } catch (error) {
      this.errorBox.textContent = error.message;
    } finally {
      for (const b of buttons) b.disabled = false;
    }
  }
}
