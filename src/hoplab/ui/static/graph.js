// The topology as an SVG graph: networks (ellipses), nodes (boxes) and a link per interface,
// laid out by the server (hoplab.ui.topo). Health colours and fault marks follow the status
// snapshots; `light` marks the links a packet is on.
import { el } from "./api.js";

const NODE_W = 104, NODE_H = 40;

export function health(status) {
  // One word per node for colour and tests: healthy, starting, unhealthy, exited, missing...
  if (!status) return "unknown";
  if (status.state !== "running") return status.state || "unknown";
  return status.health === "none" ? "healthy" : status.health;
}

export class TopologyGraph {
  constructor(svg, graph, { onNode } = {}) {
    this.svg = svg;
    this.graph = graph;
    this.nodes = new Map();
    this.links = new Map();
    this.nets = new Map();
    svg.replaceChildren();
    svg.setAttribute("viewBox", `0 0 ${graph.width} ${graph.height}`);
    svg.setAttribute("preserveAspectRatio", "xMidYMid meet");
    const where = new Map(graph.nodes.map((n) => [n.name, n]));
    const nets = new Map(graph.networks.map((n) => [n.name, n]));
    const linkLayer = el("g", { class: "links" });
    const netLayer = el("g", { class: "networks" });
    const nodeLayer = el("g", { class: "nodes" });
    svg.append(linkLayer, netLayer, nodeLayer);
    for (const link of graph.links) {
      const a = where.get(link.node), b = nets.get(link.network);
      if (!a || !b) continue;
      const line = el("line", { class: "link", "data-link": link.id, x1: a.x, y1: a.y, x2: b.x, y2: b.y },
        el("title", { text: `${link.node} on ${link.network}: ${link.address}` }));
      // The address near the node's end of the link: it is the node's interface.
      const lx = a.x + (b.x - a.x) * 0.5, ly = a.y + (b.y - a.y) * (a.x === b.x ? 0.45 : 0.5) - 3;
      const label = el("text", { class: "link-label", x: lx, y: ly, "text-anchor": "middle",
        text: link.address === "DHCP" ? "DHCP" : link.address });
      linkLayer.append(line, label);
      this.links.set(link.id, { line, label });
    }
    for (const net of graph.networks) {
      const g = el("g", { class: "network", "data-network": net.name },
        el("ellipse", { cx: net.x, cy: net.y, rx: 58, ry: 24 }),
        el("text", { x: net.x, y: net.y - 3, "text-anchor": "middle", class: "net-name", text: net.name }),
        el("text", { x: net.x, y: net.y + 11, "text-anchor": "middle", class: "net-subnet", text: net.subnet }),
        el("title", { text: `${net.name} ${net.subnet}${net.dhcp ? " DHCP " + net.dhcp : ""}` }));
      netLayer.append(g);
      this.nets.set(net.name, g);
    }
    for (const node of graph.nodes) {
      const g = el("g", { class: "node", "data-node": node.name, "data-health": "unknown", tabindex: 0,
        transform: `translate(${node.x - NODE_W / 2},${node.y - NODE_H / 2})`,
        onclick: () => onNode && onNode(node.name),
        onkeydown: (e) => { if (e.key === "Enter" && onNode) onNode(node.name); } },
        el("rect", { width: NODE_W, height: NODE_H, rx: 7 }),
        el("text", { x: NODE_W / 2, y: 16, "text-anchor": "middle", class: "node-name", text: node.name }),
        el("text", { x: NODE_W / 2, y: 30, "text-anchor": "middle", class: "node-service", text: node.service }),
        el("text", { x: NODE_W - 6, y: 12, "text-anchor": "end", class: "fault-mark", text: "" }),
        el("title", { text: node.name }));
      nodeLayer.append(g);
      this.nodes.set(node.name, g);
    }
  }

  setStatus(snapshot) {
    const faulted = new Map();
    for (const f of snapshot.faults || []) faulted.set(f.node, [...(faulted.get(f.node) || []), f]);
    for (const [name, g] of this.nodes) {
      const status = snapshot.nodes ? snapshot.nodes[name] : undefined;
      const word = health(status);
      g.setAttribute("data-health", word);
      const faults = faulted.get(name) || [];
      g.setAttribute("data-faults", String(faults.length));
      g.querySelector(".fault-mark").textContent = faults.length ? "\u26a1" : "";
      const addresses = status && status.addresses ? Object.entries(status.addresses).map(([i, a]) => `${i} ${a}`).join(", ") : "";
      g.querySelector("title").textContent = `${name}: ${status ? status.state + ", " + status.health : "no status"}` +
        (addresses ? `\n${addresses}` : "") + faults.map((f) => `\nfault ${f.fault}: ${f.symptom}`).join("");
    }
  }

  select(name) {
    for (const [n, g] of this.nodes) g.classList.toggle("selected", n === name);
  }

  // Mark a broken hop: its node and the links it crosses (diagnose's first broken hop); null clears.
  markBroken(nodeName, linkIds = []) {
    const broken = new Set(linkIds);
    for (const [id, { line }] of this.links) line.classList.toggle("broken", broken.has(id));
    for (const [name, g] of this.nodes) g.classList.toggle("broken", name === nodeName);
    if (nodeName) this.svg.setAttribute("data-broken", nodeName);
    else this.svg.removeAttribute("data-broken");
  }

  // Light the links (ids "node|network") and nodes a packet is on; [] clears.
  light(linkIds, nodeNames = []) {
    const lit = new Set(linkIds);
    for (const [id, { line, label }] of this.links) {
      line.classList.toggle("lit", lit.has(id));
      label.classList.toggle("lit", lit.has(id));
    }
    const litNets = new Set([...lit].map((id) => id.split("|")[1]));
    for (const [name, g] of this.nets) g.classList.toggle("lit", litNets.has(name));
    const litNodes = new Set(nodeNames);
    for (const [name, g] of this.nodes) g.classList.toggle("lit", litNodes.has(name));
    this.svg.setAttribute("data-lit", [...lit].sort().join(" "));
  }
}
