"""Faults of the services: their processes, the DNS zone, the DHCP server's answers, the edge
cache, the balancer, the database and the mail server. Each changes what the real daemon
does (a config file it re-reads, a runtime socket, a role) and puts it back as it was."""

from __future__ import annotations

from hoplab.chaos.model import (MAX_DURATION_S, RUN, SERVICE_PID, Context, FaultError, Plan, Step, Target, ipt_add,
                                ipt_remove, sh, unused_address)

# ------------------------------------------------------------ processes

# The service's process tree, leaving out the node's capture agent and its links' delayers (the
# runtime starts them before exec'ing the service, so they are the service's children; asked as
# such, since in a network namespace pgrep sees every node's).
_TREE = (f"aside=$(pgrep -P {SERVICE_PID} -f 'hoplab.control.agent|hoplab.node.impair' | tr '\\n' ' ' || true)\n"
         "tree() { case \" $aside \" in *\" $1 \"*) return;; esac; echo $1; "
         "for c in $(pgrep -P $1 || true); do tree $c; done; }")


def process_stop(t: Target, p: dict) -> Plan:
    return Plan([sh(t.node, f"kill -STOP {SERVICE_PID}")], [sh(t.node, f"kill -CONT {SERVICE_PID}")],
                f"{t.node}'s service process is frozen (SIGSTOP); its children keep running")


def process_pause(t: Target, p: dict) -> Plan:
    # Like `docker pause` (the cgroup freezer), but with signals so that any backend can do it.
    # A process may end between the listing and its signal (a database session closing).
    return Plan([sh(t.node, _TREE, f"for pid in $(tree {SERVICE_PID}); do kill -STOP $pid 2>/dev/null || true; done")],
                [sh(t.node, _TREE, f"for pid in $(tree {SERVICE_PID}); do kill -CONT $pid 2>/dev/null || true; done")],
                f"every process of {t.node}'s service is paused")


def process_kill(t: Target, p: dict) -> Plan:
    # The node dies with its service; only the backend can start it again.
    return Plan([sh(t.node, f"kill -KILL {SERVICE_PID}")], [Step(t.node, kind="restart")],
                f"{t.node}'s service was killed (SIGKILL) and is not running")


# Another process takes the game's port while its server restarts (a second copy of a daemon,
# a forgotten test server): the squatter waits for the port to come free, binds it, and reads
# every datagram without answering; each restart of the real server then fails at bind() with
# EADDRINUSE. The port is the one the service's start wrote down.
_SQUATTER = """
import socket, sys, time
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
deadline = time.monotonic() + 5
while True:
    try:
        sock.bind(("0.0.0.0", int(sys.argv[1])))
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit(1)
        time.sleep(0.005)
while True:
    sock.recv(2048)
"""
def port_squat(t: Target, p: dict) -> Plan:
    pidfile = f"{RUN}/chaos-port-squat.pid"
    start = (f'setsid timeout {RELAY_LIFETIME_S} python3 -c "$1" "$(cat {RUN}/port)" '
             f"</dev/null >/dev/null 2>&1 & echo $! > {pidfile}")
    # The squatter is timeout's child; the game's own script says whether it holds the port.
    squatting = f'"$HOPLAB_SERVICE/holds-port" "$(pgrep -P $(cat {pidfile}))"'
    return Plan([sh(t.node, start, f"kill $(cat {RUN}/server.pid)",
                    f"for i in $(seq 50); do {squatting} && break; sleep 0.1; done", squatting, args=(_SQUATTER,))],
                [sh(t.node, f"test -f {pidfile} && kill $(cat {pidfile}) 2>/dev/null || true", f"rm -f {pidfile}",
                    # the supervisor starts the server again within a second: wait until it holds the port
                    'for i in $(seq 30); do "$HOPLAB_SERVICE/health" && break; sleep 0.1; done; true')],
                f"another process holds {t.node}'s port: each restart of its server fails at bind() (EADDRINUSE)")


# ------------------------------------------------------------ DNS: the zone file, re-read on SIGHUP


def _zone(t: Target) -> str:
    return f"{RUN}/bind/db.{t.topology.domain.name}"


def _rewrite_zone(t: Target, edit: str, symptom: str, args: tuple = ()) -> Plan:
    zone, saved = _zone(t), _zone(t) + ".chaos"
    reload = f"kill -HUP {SERVICE_PID}; sleep 0.3"
    # `cat >` rather than `mv`: named reloads a zone only when its file is newer than its load.
    return Plan([sh(t.node, f"test -f {zone}", f"cp {zone} {saved}", edit, reload, args=args)],
                [sh(t.node, f"test -f {saved} || exit 0", f"cat {saved} > {zone}", f"rm -f {saved}", reload)],
                symptom)


def a_record(ctx: Context, name: str) -> str | None:
    """The check of a `name` parameter: a name with an A record in the lab's zone."""
    if name not in ctx.topology.domain.records and name not in ctx.topology.nodes:
        return f"has no A record in {ctx.topology.domain.name}"
    return None


def dns_nxdomain(t: Target, p: dict) -> Plan:
    # The name is one checked DNS label ([a-z0-9-]): nothing in it is special to sed.
    return _rewrite_zone(t, f'sed -i "/^$1 IN A /d" {_zone(t)}',
                         f"{p['name']}.{t.topology.domain.name} does not exist (NXDOMAIN)", (p["name"],))


def dns_wrong_a(t: Target, p: dict) -> Plan:
    name = p["name"]
    right = t.topology.domain.records.get(name) or t.topology.nodes[name].static_addresses[0][1]
    network = next(n for n, net in t.topology.networks.items() if right in net.subnet)
    wrong = p["address"] or unused_address(t.topology, network)
    return _rewrite_zone(t, f'sed -i "s/^$1 IN A .*/$1 IN A $2/" {_zone(t)}',
                         f"{name}.{t.topology.domain.name} resolves to {wrong}, where nothing answers", (name, wrong))


def dns_servfail(t: Target, p: dict) -> Plan:
    # The zone becomes a secondary whose primary cannot be reached (nothing listens on
    # loopback port 1): it never loads, and named answers SERVFAIL for every name in it.
    conf, saved = f"{RUN}/bind/named.conf", f"{RUN}/bind/named.conf.chaos"
    domain = t.topology.domain.name
    secondary = f'zone "{domain}" {{ type secondary; primaries {{ 127.0.0.1 port 1; }}; }};'
    reload = f"kill -HUP {SERVICE_PID}; sleep 0.3"
    return Plan([sh(t.node, f"cp {conf} {saved}", f"sed -i 's|^zone \"{domain}\" .*|{secondary}|' {conf}", reload)],
                [sh(t.node, f"test -f {saved} || exit 0", f"cat {saved} > {conf}", f"rm -f {saved}", reload)],
                f"every name in {domain} fails with SERVFAIL")


# A UDP relay that answers every query after a delay: netem is missing on these kernels, and a
# token bucket only delays a queue, never a lone packet. DNS queries that arrive over the
# network are redirected to it; it asks named on loopback and answers from port 53 (conntrack
# undoes the redirect on the way back).
_RELAY = """
import socket, sys, threading, time
delay = float(sys.argv[1]) / 1000
server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
server.bind(("0.0.0.0", int(sys.argv[2])))
def answer(query, client):
    time.sleep(delay)
    upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    upstream.settimeout(2)
    try:
        upstream.sendto(query, ("127.0.0.1", 53))
        server.sendto(upstream.recv(4096), client)
    except OSError:
        pass
    finally:
        upstream.close()
while True:
    query, client = server.recvfrom(4096)
    threading.Thread(target=answer, args=(query, client), daemon=True).start()
"""
RELAY_PORT = 10053
RELAY_LIFETIME_S = MAX_DURATION_S + 60  # a backstop past the longest fault: the relay dies even if no undo runs


def dns_slow(t: Target, p: dict) -> Plan:
    ms = p["ms"]
    pidfile = f"{RUN}/chaos-dns-relay.pid"
    rule = ("PREROUTING", "-p", "udp", "--dport", "53", "-j", "REDIRECT", "--to-ports", str(RELAY_PORT))
    listening = f":{RELAY_PORT:04X} "
    # The relay's source is the script's $1, its delay $2: arguments, never script text.
    start = (f'setsid timeout {RELAY_LIFETIME_S} python3 -c "$1" "$2" {RELAY_PORT} '
             f"</dev/null >/dev/null 2>&1 & echo $! > {pidfile}")
    return Plan([sh(t.node, start, f"for i in $(seq 50); do grep -q '{listening}' /proc/net/udp && break; sleep 0.1; done",
                    args=(_RELAY, ms)),
                 ipt_add(t.node, *rule, table="nat")],
                [ipt_remove(t.node, *rule, table="nat"),
                 sh(t.node, f"test -f {pidfile} && kill $(cat {pidfile}) 2>/dev/null || true", f"rm -f {pidfile}")],
                f"every DNS answer from {t.node} takes {ms} ms")


# ------------------------------------------------------------ DHCP: files dnsmasq re-reads on SIGHUP


def _dhcp_clients(t: Target) -> list[str]:
    networks = {n for n, net in t.topology.networks.items() if net.dhcp and net.dhcp.server == t.node}
    return [n.name for n in t.topology.nodes.values() if any(i.address is None and i.network in networks
                                                             for i in n.interfaces)]


def _renew(client: str, expect: tuple[str, ...] = ()) -> Step:
    """The client renews now (udhcpc: SIGUSR1) and we wait until its lease changes (or 5 s).
    With `expect` (fragments of the lease's JSON, `"router": "192.168.50.1"`), it renews again
    until the lease says them, 3 times at most: a request that reaches dnsmasq before it has
    re-read its files (SIGHUP is handled in its main loop, later on a busy host) is answered with
    the old options. Seen once in a full suite: a client kept the fault's gateway past the undo."""
    leases = f"cat {RUN}/lease-* 2>/dev/null"
    return sh(client, "for attempt in 1 2 3; do", f"before=$({leases} | md5sum)", f"kill -USR1 {SERVICE_PID}",
              f"for i in $(seq 50); do sleep 0.1; [ \"$({leases} | md5sum)\" != \"$before\" ] && break; done",
              f'good=1; for want in "$@"; do {leases} | grep -qF -- "$want" || good=0; done',
              '[ "$good" = 1 ] && exit 0', "sleep 0.3", "done",
              'echo "the lease never said $*" >&2; exit 1', args=expect)


def _lease_says(t: Target, router: str | None = None, dns: str | None = None) -> tuple[str, ...]:
    """What a client's lease from `t`'s scope says once it renewed: the given router and DNS
    server, by default the right ones."""
    net = _scope(t)
    router = router or str(t.topology.nodes[net.dhcp.gateway].address_on(net.name))
    return (f'"router": "{router}"', f'"dns": "{dns or t.topology.dns_address}"')


def _dhcp_file_fault(t: Target, name: str, edit: str, symptom: str, args: tuple = (),
                     faulty: tuple[str, ...] = ()) -> Plan:
    """`faulty`: what the renewed lease says under the fault (nothing to check: no lease)."""
    path, saved = f"{RUN}/{name}", f"{RUN}/{name}.chaos"
    reload = f"kill -HUP {SERVICE_PID}"
    clients = _dhcp_clients(t)
    return Plan([sh(t.node, f"test -f {path}", f"cp {path} {saved}", edit, reload, args=args),
                 *(_renew(c, faulty) for c in clients)],
                [sh(t.node, f"test -f {saved} || exit 0", f"cat {saved} > {path}", f"rm -f {saved}", reload),
                 *(_renew(c, _lease_says(t)) for c in clients)],
                symptom)


def _scope(t: Target):
    scopes = [net for net in t.topology.networks.values() if net.dhcp and net.dhcp.server == t.node]
    if not scopes:
        raise FaultError(f"--target: {t.node} serves no DHCP scope")
    return scopes[0]


def dhcp_pool_exhausted(t: Target, p: dict) -> Plan:
    # Every address of the pool is reserved for a machine that does not exist: a renewing
    # client is refused (NAK, "address reserved") and a new one gets no offer.
    net = _scope(t)
    first, last = int(net.dhcp.first), int(net.dhcp.last)
    reserve = (f"i=0; for a in $(seq {first} {last}); do i=$((i+1)); "
               f"printf '02:00:00:00:%02x:%02x,%d.%d.%d.%d\\n' $((i/256)) $((i%256)) "
               f"$((a>>24&255)) $((a>>16&255)) $((a>>8&255)) $((a&255)); done > {RUN}/dhcp-hosts")
    return _dhcp_file_fault(t, "dhcp-hosts", reserve, f"{t.node} has no free address left in {net.name}'s pool")


def _wrong_option(t: Target, p: dict, option: str, default_network_of: str) -> Plan:
    net = _scope(t)
    value = p["address"] or default_network_of
    edit = f'sed -i "s/option:{option},.*/option:{option},$1/" {RUN}/dhcp-options'
    faulty = _lease_says(t, **{"router" if option == "router" else "dns": value})
    return _dhcp_file_fault(t, "dhcp-options", edit, f"{t.node} hands out {option} {value} on {net.name}", (value,),
                            faulty)


def dhcp_wrong_gateway(t: Target, p: dict) -> Plan:
    # By default the DHCP server's own address: a classic typo, and it does not forward.
    net = _scope(t)
    return _wrong_option(t, p, "router", str(t.topology.nodes[t.node].address_on(net.name)))


def dhcp_wrong_dns(t: Target, p: dict) -> Plan:
    # By default the gateway's address: another classic, and no DNS server listens there.
    net = _scope(t)
    return _wrong_option(t, p, "dns-server", str(t.topology.nodes[net.dhcp.gateway].address_on(net.name)))


# ------------------------------------------------------------ the edge, the balancer, the database, mail


def a_web_node(ctx: Context, server: str) -> str | None:
    """The check of a `server` parameter: a web replica the balancer knows."""
    if server not in {n.name for n in ctx.topology.nodes_of("web")}:
        return "is not a web node"
    return None


def lb_backend_down(t: Target, p: dict) -> Plan:
    admin = "socat stdio /run/haproxy/admin.sock"
    return Plan([sh(t.node, f"printf 'disable server web/%s\\n' \"$1\" | {admin}", args=(p["server"],))],
                [sh(t.node, f"printf 'enable server web/%s\\n' \"$1\" | {admin}", args=(p["server"],))],
                f"the balancer sends nothing to {p['server']}")


_STALE_KEY = "chaos-stale"
_STALE_CONF = (f'proxy_cache_key "{_STALE_KEY} $scheme$proxy_host$request_uri";\n'
               "proxy_ignore_headers Cache-Control Expires Set-Cookie;\n"
               "proxy_cache_valid any {ttl}s;\n")


def stale_cache(t: Target, p: dict) -> Plan:
    # The edge ignores what the origin says about caching and keeps every answer: pages marked
    # no-store are served from the cache, the same copy to everyone. Its own cache key, so
    # the revert can delete exactly the copies made meanwhile.
    ttl = p["ttl"]
    dropin_dir = f"{RUN}/edge.d"
    dropin = f"{dropin_dir}/chaos-stale.conf"
    reload = f"kill -HUP {SERVICE_PID}; sleep 0.5"
    return Plan([sh(t.node, f"mkdir -p {dropin_dir}", f'printf %s "$1" > {dropin}', reload,
                    args=(_STALE_CONF.format(ttl=ttl),))],
                [sh(t.node, f"rm -f {dropin}", f"rmdir {dropin_dir} 2>/dev/null || true", reload,
                    f"grep -rlaZ '^KEY: {_STALE_KEY} ' {RUN}/cache 2>/dev/null | xargs -0 -r rm -f")],
                f"{t.node} serves cached copies of every page for {ttl} s, whatever the origin says")


_LIMIT_ZONE = "limit_req_zone $binary_remote_addr zone=chaos_clients:1m rate={rate}r/s;\n"
_LIMIT = "limit_req zone=chaos_clients burst={burst} nodelay;\n"


def edge_rate_limit(t: Target, p: dict) -> Plan:
    # A limit per client address of its own, beside the topology's (nginx applies every
    # limit_req of a location): its zone at the http level, the limit in www's location. The
    # edge's config answers a refusal with 429 and Retry-After whoever set the limit. Checked
    # before the reload: nginx keeps its old config on a bad one, and the fault would be silent.
    rate, burst = p["requests_per_second"], p["burst"]
    zone_dir, limit_dir = f"{RUN}/edge-http.d", f"{RUN}/edge.d"
    zone, limit = f"{zone_dir}/chaos-rate-limit.conf", f"{limit_dir}/chaos-rate-limit.conf"
    reload = f"kill -HUP {SERVICE_PID}; sleep 0.5"
    return Plan([sh(t.node, f"mkdir -p {zone_dir} {limit_dir}", f'printf %s "$1" > {zone}', f'printf %s "$2" > {limit}',
                    f"nginx -t -q -e stderr -c {RUN}/nginx.conf", reload,
                    args=(_LIMIT_ZONE.format(rate=rate), _LIMIT.format(burst=burst)))],
                [sh(t.node, f"rm -f {limit}", f"rm -f {zone}", f"rmdir {limit_dir} {zone_dir} 2>/dev/null || true",
                    reload)],
                f"{t.node} answers 429 Too Many Requests to a client address past {rate} requests/s (burst {burst})")


def db_connection_limit(t: Target, p: dict) -> Plan:
    # The role reaches SQL as a psql variable, quoted by psql (:"role" an identifier, :'role' a
    # literal). Injecting also ends the role's sessions: an app that pools its connections
    # would not notice the limit otherwise.
    def limit(n: int, end_sessions: bool = False) -> str:
        statements = [f"'ALTER ROLE :\"role\" CONNECTION LIMIT {n};'"]
        if end_sessions:
            statements.append("\"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = :'role';\"")
        return (f"printf '%s\\n' {' '.join(statements)} | "
                'psql -X -q -v ON_ERROR_STOP=1 -U postgres -d postgres -v role="$1" >/dev/null')
    return Plan([sh(t.node, limit(0, end_sessions=True), args=(p["role"],))], [sh(t.node, limit(-1), args=(p["role"],))],
                f"the database refuses every connection of {p['role']}, and its open sessions end")


def smtp_refuse(t: Target, p: dict) -> Plan:
    conf, saved = "/etc/postfix/main.cf", f"{RUN}/chaos-main.cf"
    return Plan([sh(t.node, f"cp {conf} {saved}", "postconf -e 'smtpd_client_restrictions = reject'", "postfix reload")],
                [sh(t.node, f"test -f {saved} || exit 0", f"cat {saved} > {conf}", f"rm -f {saved}", "postfix reload")],
                f"{t.node} refuses every message (554 Access denied)")

