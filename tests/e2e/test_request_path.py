"""One page load across every hop: client -> router (NAT) -> cache (CDN edge, TLS) -> lb ->
web -> db, and an order that ends as a row in the database and a mail in the buyer's mailbox.
Everything is observed the way a user would: curl and IMAP from the client, psql in the db."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections import Counter

import pytest

from hoplab.paths import SERVICES_DIR


IMAP_COUNT = """
import imaplib, sys
box = imaplib.IMAP4(sys.argv[1], 143)
box.login(sys.argv[2], "hoplab")
box.select("INBOX", readonly=True)
print(len(box.search(None, "SUBJECT", '"%s"' % sys.argv[3])[1][0].split()))
"""


def curl(lab, url, *args, node="client"):
    """(status, headers, body) of one request from a lab client, certificate verified."""
    out = lab.exec(node, "curl", "-sS", "-i", "--max-time", "10", *args, url).stdout
    head, _, body = out.partition("\n\n")  # text mode has already turned CRLF into LF
    lines = head.split("\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def sql(lab, query):
    out = lab.exec("db", "runuser", "-u", "postgres", "--", "psql", "-d", "shop", "-Atc", query).stdout
    return [line.split("|") for line in out.splitlines()]


def order_count(lab):
    return int(sql(lab, "SELECT count(*) FROM orders")[0][0])


def mails(lab, subject, user="buyer"):
    out = lab.exec("client", "python3", "-c", IMAP_COUNT, f"mail.{lab.topology.domain.name}", user, subject).stdout
    return int(out.strip())


def mail_sent(lab, order_id):
    """The outbox row of an order is marked sent: no sender will send it again."""
    return sql(lab, f"SELECT sent_at IS NOT NULL FROM mail_outbox WHERE order_id = {int(order_id)}") == [["t"]]


def eventually(check, seconds=20, interval=0.1):
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def place_order(lab, user="buyer", product="1", quantity="2"):
    email = f"{user}@{lab.topology.domain.name}"
    return curl(lab, f"{lab.www}/order", "-d", f"buyer_email={email}", "-d", f"product_id={product}",
                "-d", f"quantity={quantity}")


def lb_admin(lab, command):
    """A command on HAProxy's runtime API (its admin socket in the lb node)."""
    return lab.exec("lb", "socat", "stdio", "/run/haproxy/admin.sock", input=f"{command}\n").stdout


def lb_state(lab, server):
    """A backend server's state as HAProxy's `show stat` gives it (UP, DOWN, MAINT, ...)."""
    rows = [line.split(",") for line in lb_admin(lab, "show stat").splitlines() if line.startswith(f"web,{server},")]
    return rows[0][17] if rows else None


def wait_healthy(lab, nodes, seconds=90):
    return eventually(lambda: all(lab.status()[n]["health"] == "healthy" for n in nodes), seconds)


def test_https_page_lists_products_from_the_database(lab):
    status, headers, body = curl(lab, f"{lab.www}/")  # curl fails on a certificate it cannot verify
    assert status == 200
    names = [row[0] for row in sql(lab, "SELECT name FROM products")]
    assert len(names) >= 5
    for name in names:
        assert name in body
    assert headers["x-edge"] == "cache"
    assert headers["x-served-by"] in {n.name for n in lab.topology.nodes_of("web")}


def test_certificate_is_issued_by_the_lab_ca(lab):
    www = f"www.{lab.topology.domain.name}"
    out = lab.sh("client", f"echo | openssl s_client -connect {www}:443 -servername {www} "
                           "-verify_return_error 2>&1 || true").stdout
    assert "Verify return code: 0 (ok)" in out
    assert f"hoplab {lab.name} lab CA" in out


def test_the_ca_key_stays_on_the_edge(lab):
    """Clients mount the lab's pki volume: it holds the CA's certificate and nothing secret. The
    keys live on the edge's own volume, readable by root alone."""
    shared = lab.sh("client", "ls -A /etc/hoplab/pki").stdout.split()
    edges = [n.name for n in lab.topology.nodes_of("cache")]
    assert sorted(shared) == sorted(f"ca-{edge}.crt" for edge in edges), shared
    assert lab.sh("client", "grep -rl 'PRIVATE KEY' /etc/hoplab /usr/local/share/ca-certificates",
                  check=False).stdout == ""
    keys = lab.sh(edges[0], "stat -c '%n %a %U' /var/lib/hoplab/ca /var/lib/hoplab/ca/ca.key "
                            "/var/lib/hoplab/ca/www.key && head -1 /var/lib/hoplab/ca/ca.key").stdout.splitlines()
    assert keys[:3] == ["/var/lib/hoplab/ca 700 root", "/var/lib/hoplab/ca/ca.key 600 root",
                        "/var/lib/hoplab/ca/www.key 600 root"], keys
    assert keys[3] == "-----BEGIN PRIVATE KEY-----"
    # the certificate clients trust is the edge's own CA's
    assert lab.sh(edges[0], f"cmp /var/lib/hoplab/ca/ca.crt /etc/hoplab/pki/ca-{edges[0]}.crt").returncode == 0


def test_the_app_password_has_one_source(lab):
    """services/db/shop_app.password, published by the db node for the web nodes only."""
    source = (SERVICES_DIR / "db" / "shop_app.password").read_text().strip()
    assert not (SERVICES_DIR / "web" / "db.password").exists()
    web = lab.topology.nodes_of("web")[0].name
    assert lab.sh(web, "cat /etc/hoplab/db-app/shop_app.password").stdout.strip() == source
    assert lab.sh("client", "ls /etc/hoplab/db-app", check=False).returncode != 0


def test_cacheable_page_is_a_hit_on_repeat(lab):
    url = f"{lab.www}/?probe={uuid.uuid4().hex}"  # a key nobody fetched yet
    assert curl(lab, url)[1]["x-cache"] == "MISS"
    assert curl(lab, url)[1]["x-cache"] == "HIT"


def test_uncacheable_page_and_post_are_never_cached(lab):
    for _ in range(3):
        status, headers, _ = curl(lab, f"{lab.www}/order")
        assert status == 200 and headers.get("x-cache") != "HIT"
    for _ in range(2):
        status, headers, _ = place_order(lab)
        assert status == 201 and headers.get("x-cache") != "HIT"


def test_every_web_replica_serves(lab):
    served = Counter(curl(lab, f"{lab.www}/order")[1]["x-served-by"] for _ in range(20))
    assert set(served) == {n.name for n in lab.topology.nodes_of("web")}, served


def test_order_adds_one_row_and_one_mail(lab):
    before = order_count(lab)
    status, headers, _ = place_order(lab, quantity="3")
    assert status == 201
    order_id = headers["location"].rsplit("/", 1)[1]
    assert order_count(lab) == before + 1
    assert sql(lab, f"SELECT buyer_email, quantity FROM orders WHERE id = {int(order_id)}") == [
        [f"buyer@{lab.topology.domain.name}", "3"]]
    subject = f"Your order {order_id} at"
    assert eventually(lambda: mails(lab, subject) == 1), "the confirmation mail never arrived"
    assert eventually(lambda: mail_sent(lab, order_id)), "the outbox never marked the mail sent"
    assert mails(lab, subject) == 1, "the confirmation mail arrived twice"


def test_client_cannot_reach_the_origin_directly(lab):
    db = lab.address("db", "origin")
    for node in ("web1", "web2"):
        lab.exec(node, "nc", "-z", "-w", "2", db, "5432")
        lab.exec(node, "nc", "-z", "-w", "2", lab.address("mail", "origin"), "25")
    route = lab.exec("router", "ip", "route", "get", db, check=False)
    assert route.returncode != 0 and "unreachable" in route.stderr.lower()
    assert lab.exec("client", "nc", "-z", "-w", "2", db, "5432", check=False).returncode != 0
    assert lab.exec("client", "nc", "-z", "-w", "2", lab.address("web1", "origin"), "8080",
                    check=False).returncode != 0


@pytest.mark.parametrize("bad", [
    ["-d", "buyer_email=x@example.test", "-d", "product_id=1"],  # missing field
    ["-d", "buyer_email=not-an-email", "-d", "product_id=1", "-d", "quantity=1"],
    ["-d", "buyer_email=x@example.test", "-d", "product_id=1;DROP TABLE orders", "-d", "quantity=1"],
    ["-d", "buyer_email=x'--@example.test", "-d", "product_id=1", "-d", "quantity=1 OR 1=1"],
    ["-d", "buyer_email=x@example.test", "-d", "product_id=99999", "-d", "quantity=1"],
    ["-d", "buyer_email=x@example.test", "-d", "product_id=1", "-d", "quantity=0"],
    ["--data-binary", "@/etc/ssl/certs/ca-certificates.crt"],  # oversized body
    ["-X", "DELETE"],
    ["-X", "PUT", "-d", "buyer_email=x@example.test"],
])
def test_bad_input_is_refused_and_changes_nothing(lab, bad):
    before = order_count(lab)
    status, _, _ = curl(lab, f"{lab.www}/order", *bad)
    assert 400 <= status < 500
    assert order_count(lab) == before
    assert sql(lab, "SELECT count(*) FROM products")[0][0] != "0"


def test_stopped_replica_is_taken_out_and_back(lab):
    lab.hoplab("stop", "web1", "--time", "2")
    try:
        # The LB's checks (every 1 s, fall 2) take web1 out; then no request may fail.
        assert eventually(lambda: lb_state(lab, "web1") == "DOWN", 10), lb_state(lab, "web1")
        for _ in range(15):
            status, headers, _ = curl(lab, f"{lab.www}/order")
            assert status == 200 and headers["x-served-by"] == "web2"
    finally:
        lab.hoplab("start", "web1")
    assert wait_healthy(lab, ["web1"])
    assert eventually(lambda: curl(lab, f"{lab.www}/order")[1]["x-served-by"] == "web1", 20)


@pytest.mark.parametrize("node", ["db", "web1", "mail"])
def test_restart_loses_no_order_and_no_mail(lab, node):
    status, headers, _ = place_order(lab, user="alice")
    assert status == 201
    order_id = headers["location"].rsplit("/", 1)[1]
    subject = f"Your order {order_id} at"
    assert eventually(lambda: mails(lab, subject, user="alice") == 1)
    orders = order_count(lab)
    lab.hoplab("restart", node)
    assert wait_healthy(lab, [node])
    assert eventually(lambda: order_count(lab) == orders)
    # the mailbox once its IMAP server answers again (a restarted node's health can read
    # "healthy" from before the restart for a moment): still exactly one mail
    assert eventually(lambda: readable_mails(lab, subject, "alice") is not None), after_restart(lab, node) + imap_said(lab)
    assert mails(lab, subject, user="alice") == 1
    assert eventually(lambda: curl(lab, f"{lab.www}/order")[0] == 200), after_restart(lab, node)


def after_restart(lab, node):
    """What a failed recovery looks like from the balancer, the replicas and the restarted node,
    as one text (pytest shortens a long non-text message)."""
    said = [f"lb: {({s: lb_state(lab, s) for s in ('web1', 'web2')})}"]
    for web in ("web1", "web2"):
        said.append(f"--- {web}:\n" + lab.sh(web, "curl -sS -m 3 http://127.0.0.1:8080/health; ip neigh; ss -tn",
                                              check=False).stdout)
    said.append(f"--- {node}:\n" + lab.sh(node, "ip -br addr; ip route; ss -ltn; iptables -w -S; nft list ruleset",
                                          check=False).stdout)
    said += lab.driver.logs(lab.topology, node, 25)
    # The host's side: which bridge ports carry the node's MACs (a second port would be an old
    # life's interface still answering), and the network namespaces that exist.
    macs = lab.sh(node, "cat /sys/class/net/*/address", check=False).stdout.split()
    fdb = subprocess.run(["bridge", "fdb", "show"], capture_output=True, text=True).stdout.splitlines()
    said += ["--- host bridge fdb:", *[line for line in fdb if any(mac in line for mac in macs)]]
    said += ["--- host net namespaces:", subprocess.run(["lsns", "-t", "net", "-o", "NS,NPROCS,PID,COMMAND"],
                                                        capture_output=True, text=True).stdout]
    if node == "db" and lab.backend == "docker":
        said.append(packets_of_a_connect(lab, "web1", lab.address("db", "origin"), "5432"))
    if node == "db":
        said.append(lab.sh("db", "psql -X -U postgres -d postgres -Atc \"SELECT rolname, rolconnlimit FROM pg_roles "
                                 "WHERE rolname='shop_app'\"; psql -X -U postgres -d postgres -Atc "
                                 "\"SELECT count(*), usename FROM pg_stat_activity GROUP BY usename\"",
                           check=False).stdout)
    return "\n".join(said)


def packets_of_a_connect(lab, client, address, port):
    """One TCP connect from `client` as the host's wires and the peer's counters saw it: who
    answers a refused SYN (the peer's kernel, or something on the way)."""
    pid = subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", f"hoplab-{lab.topology.name}-db"],
                         capture_output=True, text=True).stdout.strip()
    counters = ["nsenter", "-t", pid, "-n", "nstat", "-az", "TcpActiveOpens", "TcpPassiveOpens", "TcpOutRsts",
                "TcpExtListenDrops", "TcpExtListenOverflows", "TcpExtTCPReqQFullDrop", "TcpAttemptFails"]
    before = subprocess.run(counters, capture_output=True, text=True).stdout
    dump = subprocess.Popen(["timeout", "6", "tcpdump", "-l", "-n", "-e", "-i", "any", "-c", "40",
                             f"tcp port {port} and host {address}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(1)
    tried = lab.exec(client, "nc", "-z", "-v", "-w", "2", address, port, check=False)
    out, _ = dump.communicate()
    after = subprocess.run(counters, capture_output=True, text=True).stdout
    legacy = subprocess.run(["nsenter", "-t", pid, "-n", "iptables-legacy-save"], capture_output=True, text=True)
    tracked = subprocess.run(["conntrack", "-L", "-p", "tcp", "--dport", port], capture_output=True, text=True)
    host_rules = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout
    return "\n".join([f"--- connect {client} -> {address}:{port}: exit {tried.returncode} {tried.stdout}{tried.stderr}",
                      "--- on the host's wires:", out, "--- db counters before:", before, "--- after:", after,
                      "--- db iptables-legacy:", legacy.stdout + legacy.stderr,
                      "--- host conntrack:", tracked.stdout + tracked.stderr,
                      "--- host nft lines naming reject or the port:",
                      *[line for line in host_rules.splitlines() if "reject" in line or port in line]])


def imap_said(lab):
    """What the client's IMAP count says now, error and all."""
    result = lab.exec("client", "python3", "-c", IMAP_COUNT, f"mail.{lab.topology.domain.name}", "alice", "x",
                      check=False)
    return f"\n--- IMAP from the client: exit {result.returncode}\n{result.stdout}{result.stderr[-1500:]}"


def readable_mails(lab, subject, user):
    """How many mails with `subject` the mailbox holds, or None while IMAP refuses connections."""
    try:
        return mails(lab, subject, user=user)
    except AssertionError:
        return None


def test_lb_runtime_socket_drains_and_enables_a_replica(lab):
    lb_admin(lab, "disable server web/web1")
    try:
        assert lb_state(lab, "web1") == "MAINT"
        served = {curl(lab, f"{lab.www}/order")[1]["x-served-by"] for _ in range(10)}
        assert served == {"web2"}
    finally:
        lb_admin(lab, "enable server web/web1")
    assert eventually(lambda: curl(lab, f"{lab.www}/order")[1]["x-served-by"] == "web1", 20)


def test_management_network_is_no_way_around_the_data_plane(lab):
    management = lab.topology.management
    web = lab.topology.nodes_of("web")[0].name
    port = "8080"  # the replica's server listens on 0.0.0.0: on its management address too
    behind = str(management.addresses[web])
    # Positive controls: the server answers on that address from inside its node, and on the
    # data plane to the balancer in front of it.
    lab.exec(web, "nc", "-z", "-w", "2", behind, port)
    lab.exec("lb", "nc", "-z", "-w", "2", lab.address(web, "origin"), port)
    # Over the management network neither the client nor that very balancer gets through...
    for node in (lab.clients()[0], "lb"):
        assert lab.exec(node, "nc", "-z", "-w", "2", behind, port, check=False).returncode != 0, node
    # ...while every node reaches the control service there.
    lab.exec(lab.clients()[0], "nc", "-z", "-w", "2", str(management.control), str(management.port))
