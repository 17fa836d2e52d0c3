// One packet's layers as header diagrams (Ethernet, IPv4, TCP/UDP, then the application's
// summary; a TLS record decrypted from the client's key log as TLS over HTTP), each field a box
// sized by its bits, with the actual values from the trace's JSON
// (render.to_json). Fields that changed since the previous hop — a router's MAC rewrite and
// TTL decrement (`forwarded`), NAT (`translated`) — are marked and explained.
import { el } from "./api.js";

export function splitEndpoint(text) {
  // "192.0.2.1:443" -> ["192.0.2.1", "443"]; "192.0.2.1" -> ["192.0.2.1", ""]
  const at = (text || "").lastIndexOf(":");
  return at > 0 && !text.includes("[") ? [text.slice(0, at), text.slice(at + 1)] : [text || "", ""];
}

// What changed at this hop, as {field: {was, why}}, from the hop's own forwarding and NAT records.
export function changes(hop) {
  const out = {};
  const f = hop.forwarded;
  if (f) {
    const via = `${hop.node} routed it from ${f.iface} to ${hop.iface}`;
    if (f.eth_src && f.eth_src !== hop.eth_src)
      out.eth_src = { was: f.eth_src, why: `MAC rewrite: ${via}, so the frame now leaves from ${hop.node}'s own ${hop.iface} interface (source MAC ${hop.eth_src})` };
    if (f.eth_dst && f.eth_dst !== hop.eth_dst)
      out.eth_dst = { was: f.eth_dst, why: `MAC rewrite: the frame is addressed to the next hop on ${hop.iface} (${hop.eth_dst}), found by ARP` };
    if (f.ttl && f.ttl !== hop.ttl)
      out.ttl = { was: String(f.ttl), why: `TTL ${f.ttl} \u2192 ${hop.ttl}: every router takes one off, so a looping packet dies` };
  }
  const t = hop.translated;
  if (t) {
    const [bs, bsp] = splitEndpoint(t.before.src), [as, asp] = splitEndpoint(t.after.src);
    const [bd, bdp] = splitEndpoint(t.before.dst), [ad, adp] = splitEndpoint(t.after.dst);
    if (bs !== as) out.src = { was: bs, why: `NAT (masquerade) at ${hop.node}: the private source ${t.before.src} leaves as ${t.after.src}, so replies come back to ${hop.node}` };
    if (bsp !== asp) out.sport = { was: bsp, why: `NAT at ${hop.node}: source port ${bsp} \u2192 ${asp} (the conntrack entry keeps the mapping)` };
    if (bd !== ad) out.dst = { was: bd, why: `NAT reversed at ${hop.node}: the reply to ${t.before.dst} is delivered to ${t.after.dst}, the host that asked` };
    if (bdp !== adp) out.dport = { was: bdp, why: `NAT reversed at ${hop.node}: destination port ${bdp} \u2192 ${adp}` };
  }
  return out;
}

function field(name, label, value, bits, changed) {
  const c = changed[name];
  return el("div", { class: `field${c ? " changed" : ""}`, "data-field": name, style: `flex-grow:${bits}`,
    title: c ? `was ${c.was}: ${c.why}` : `${label}: ${value}` },
    el("span", { class: "label", text: label }),
    el("span", { class: "value", text: value === "" || value === undefined ? "-" : String(value) }),
    c ? el("span", { class: "was", text: `was ${c.was}` }) : null);
}

function header(title, ...rows) {
  return el("div", { class: "header", "data-layer": title.toLowerCase().split(" ")[0] },
    el("div", { class: "header-title", text: title }), rows.map((fields) => el("div", { class: "row" }, fields)));
}

const IP_PROTOS = { tcp: 6, udp: 17, icmp: 1 };

// A TLS record decrypted with the client's key log: the TLS layer (its cipher), and over it the
// HTTP the record carried, with the values read from it.
function tlsLayers(hop, changed) {
  const d = hop.decrypted, k = d.keys || {};
  const http = [[field("http_method", "method", k.http_method, 16, changed), field("http_path", "path", k.http_path, 48, changed),
    field("http_host", "Host", k.http_host, 32, changed)]];
  if (k.http_status || k.x_cache) http.push([field("http_status", "status", k.http_status, 16, changed),
    field("x_cache", "X-Cache", k.x_cache, 32, changed)]);
  if (k.traceparent) http.push([field("traceparent", "traceparent", k.traceparent, 96, changed)]);
  return [header("TLS (decrypted with the client's key log)", [field("tls_record", "record", hop.summary, 64, changed),
      field("cipher", "cipher", d.cipher, 32, changed)]),
    header("HTTP (inside TLS)", [field("decrypted", "says", d.summary, 96, changed)], ...http)];
}

export function drawLayers(container, hop, peer) {
  const changed = changes(hop);
  const parts = [];
  parts.push(header("Ethernet", [field("eth_dst", "destination MAC", hop.eth_dst, 48, changed),
    field("eth_src", "source MAC", hop.eth_src, 48, changed),
    field("ethertype", "type", hop.proto === "arp" ? "0x0806 ARP" : "0x0800 IPv4", 16, changed)]));
  const [src, sport] = splitEndpoint(hop.src), [dst, dport] = splitEndpoint(hop.dst);
  if (hop.ttl) {
    const transport = hop.tcp_flags ? "tcp" : (["dns", "dhcp", "udp"].includes(hop.proto) ? "udp" : hop.proto);
    parts.push(header("IPv4", [field("version", "ver", 4, 4, changed), field("ttl", "TTL", hop.ttl, 8, changed),
      field("protocol", "protocol", `${IP_PROTOS[transport] ?? "?"} ${transport}`, 8, changed),
      field("ip_id", "identification", `0x${hop.ip_id.toString(16).padStart(4, "0")}`, 16, changed)],
      [field("src", "source address", src, 32, changed), field("dst", "destination address", dst, 32, changed)]));
    if (transport === "tcp") {
      parts.push(header("TCP", [field("sport", "source port", sport, 16, changed), field("dport", "destination port", dport, 16, changed)],
        [field("seq", "sequence number", hop.tcp_seq, 32, changed), field("flags", "flags", hop.tcp_flags, 16, changed)]));
    } else if (transport === "udp") {
      parts.push(header("UDP", [field("sport", "source port", sport, 16, changed), field("dport", "destination port", dport, 16, changed)]));
    }
  }
  if (hop.decrypted) parts.push(...tlsLayers(hop, changed));
  else if (!["tcp", "udp", "ip"].includes(hop.proto))
    parts.push(header(`${(hop.proto || "data").toUpperCase()}${hop.proto === "arp" ? "" : " (application)"}`,
      [field("summary", "summary", hop.summary, 96, changed)]));
  const reasons = Object.entries(changed).map(([name, c]) => el("li", { "data-field": name }, el("b", { text: name }), ` ${c.why}`));
  const remarks = [];
  if (hop.accepted) remarks.push(`accepted by ${hop.accepted.process || hop.accepted.listeners || "?"} on ${hop.accepted.listener}`);
  if (hop.refused) remarks.push(`refused: ${hop.refused}`);
  const cache = (hop.keys && hop.keys.x_cache) || (hop.decrypted && hop.decrypted.keys && hop.decrypted.keys.x_cache);
  if (cache) remarks.push(`cache ${cache}`);
  container.replaceChildren(...[
    el("p", { class: "hop-where" }, el("b", { text: `${hop.node}:${hop.iface}` }), ` ${hop.direction}, ${hop.length || "?"} bytes`,
      peer ? ` \u2192 seen again at ${peer.node}:${peer.iface}` : ""),
    ...parts,
    reasons.length ? el("div", { class: "explain" }, el("h4", { text: `Changed at ${hop.node}` }), el("ul", {}, reasons))
      : el("p", { class: "muted", text: "Nothing rewritten at this hop: the frame is the one the sender put on the wire." }),
    remarks.length ? el("ul", { class: "remarks" }, remarks.map((r) => el("li", { text: r }))) : null].filter(Boolean));
}
