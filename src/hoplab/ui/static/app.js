// The page's entry: load the lab, show the page the address names (#lab, #visit, #load, #break), and keep
// every view current from the server's status events.
import { api } from "./api.js";
import { LabPage } from "./lab.js";
import { VisitPage } from "./visit.js";
import { BreakPage } from "./break.js";
import { LoadPage } from "./load.js";

function countdowns() {
  const now = Date.now() / 1000;
  for (const span of document.querySelectorAll(".countdown[data-deadline]")) {
    const left = Math.max(Number(span.dataset.deadline) - now, 0);
    span.textContent = `${Math.floor(left / 60)}:${String(Math.floor(left % 60)).padStart(2, "0")} left`;
  }
}

async function main() {
  const status = document.querySelector("#connection");
  let lab;
  try {
    lab = await api("/api/lab");
  } catch (error) {
    status.textContent = error.message;
    status.className = "bad";
    return;
  }
  document.querySelector("#lab-name").textContent = `${lab.graph.lab} (${lab.backend})`;
  document.title = `hoplab \u2014 ${lab.graph.lab}`;
  const pages = { lab: new LabPage(document.querySelector("#page-lab"), lab),
                  visit: new VisitPage(document.querySelector("#page-visit"), lab),
                  load: new LoadPage(document.querySelector("#page-load"), lab),
                  break: new BreakPage(document.querySelector("#page-break"), lab) };
  const show = () => {
    const [name, arg] = (location.hash.slice(1) || "lab").split("/");
    const page = pages[name] ? name : "lab";
    for (const [key, view] of Object.entries(pages)) view.root.classList.toggle("active", key === page);
    for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.page === page);
    if (page === "load") pages.load.shown().catch((e) => { document.querySelector("#load-error").textContent = e.message; });
    if (page === "break") pages.break.shown().catch((e) => { document.querySelector("#fault-error").textContent = e.message; });
    if (page === "visit") {
      pages.visit.shown();
      if (arg && /^[0-9a-f]{32}$/.test(arg)) pages.visit.open(arg);
    }
  };
  window.addEventListener("hashchange", show);
  show();
  const events = new EventSource("/api/events");
  events.addEventListener("status", (e) => {
    const snapshot = JSON.parse(e.data);
    if (!document.body.dataset.version) requestAnimationFrame(() => performance.mark("lab-live"));  // bench-ui
    for (const view of Object.values(pages)) view.update(snapshot);
    status.textContent = "live";
    status.className = "ok";
    document.body.dataset.version = snapshot.version;
  });
  events.onerror = () => { status.textContent = "reconnecting\u2026"; status.className = "bad"; };
  setInterval(countdowns, 1000);
  document.body.dataset.ready = "1";
}

main();
