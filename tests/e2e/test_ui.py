"""`hoplab ui` in a real browser: Playwright driving Debian's Chromium headless against a
`hoplab ui` process on each backend's lab. The lab page's live health (a node stopped through
the backend turns not-healthy, and healthy again after its start), a traced visit from the
page (its stages; at the router the NAT and the MAC rewrite highlighted), step-through lighting
the packet's link on the graph, the CLI's own error for a bad URL, a fault injected and halted
from the break-and-fix page (and the CLI's error for a bad parameter), a cross-origin POST
refused, a short load run from the load page (live numbers, the SLO verdict, Locust's report;
the CLI's error for a bad value), a drill started, hinted and given up, and diagnose naming the
broken hop of an injected fault, marked on the graph. Screenshots of each page go to
build/ui-screens/."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import pytest

from helpers import HOPLAB
from hoplab.paths import BUILD_DIR
from hoplab.progress import Progress

SCREENS = BUILD_DIR / "ui-screens"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LIVE_S = 2.0  # the page shows a stopped node within this long (the bound)
SLACK_S = 1.5  # the browser's and the backend's own time on a loaded 2-core machine
VISIT_S = 90  # a traced visit's bound (the library's capture bound, and then some)


def _prerequisite() -> str | None:
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} is not installed (scripts/setup-host installs Debian's chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install -e .[dev])"
    return None


@pytest.fixture(scope="module")
def browser():
    reason = _prerequisite()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except (urllib.error.URLError, OSError):
        return 0


@pytest.fixture(scope="module")
def ui(lab):
    """`hoplab ui` on a free port for this backend's lab, as a user starts it; stopped after."""
    SCREENS.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log = open(SCREENS / f"server-{lab.backend}.log", "w")
    proc = subprocess.Popen([*HOPLAB, "ui", "--port", str(port), "--topology", lab.path, "--backend", lab.backend],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while _get(f"{base}/api/status") != 200:
            assert proc.poll() is None, f"hoplab ui exited {proc.returncode}: {(SCREENS / f'server-{lab.backend}.log').read_text()}"
            assert time.monotonic() < deadline, "hoplab ui did not answer within 30 s"
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def page(browser, ui, lab):
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{ui}/#lab")
    page.wait_for_selector("body[data-ready]")
    yield page
    context.close()
    assert errors == [], f"the page threw: {errors}"


def _all_healthy_js(nodes: list[str]) -> str:
    return (f"() => {json.dumps(nodes)}.every(n => document.querySelector(`#lab-graph [data-node=\"${{n}}\"]`)"
            f"?.dataset.health === 'healthy')")


def _lb_sees(lab, server: str) -> bool:
    out = lab.exec("lb", "socat", "stdio", "/run/haproxy/admin.sock", input="show stat\n", check=False).stdout
    return any(line.startswith(f"web,{server},") and line.split(",")[17] == "UP" for line in out.splitlines())


def test_the_lab_page_shows_health_live(lab, page):
    nodes = list(lab.topology.nodes)
    page.goto(page.url.split("#")[0] + "#lab")
    page.wait_for_function(_all_healthy_js(nodes), timeout=20_000)
    assert page.inner_text("#healthy-count") == f"{len(nodes)} of {len(nodes)} nodes healthy"
    edge = str(lab.topology.domain.records["www"])
    cache = next(n.name for n in lab.topology.nodes.values() if any(str(i.address) == edge for i in n.interfaces))
    page.click(f'#lab-graph [data-node="{cache}"]')
    page.wait_for_selector("#node-panel table", timeout=15_000)  # its listening sockets, from the node's kernel
    assert ":443" in page.inner_text("#node-panel table")
    page.screenshot(path=str(SCREENS / f"lab-{lab.backend}.png"))

    victim = lab.topology.nodes_of("web")[-1].name
    selector = f'#lab-graph [data-node="{victim}"]'
    lab.driver.stop_node(lab.topology, victim, 3)
    stopped = time.monotonic()
    try:
        page.wait_for_selector(f'{selector}:not([data-health="healthy"])', timeout=(LIVE_S + SLACK_S) * 1000)
        shown = time.monotonic() - stopped
        page.screenshot(path=str(SCREENS / f"lab-stopped-{lab.backend}.png"))
        assert shown < LIVE_S + SLACK_S, f"{victim} turned not-healthy on the page {shown:.1f} s after it stopped"
    finally:
        lab.driver.start_node(lab.topology, victim, Progress(quiet=True))
        deadline = time.monotonic() + 60
        while not _lb_sees(lab, victim):  # later tests see the whole lab: the balancer uses it again
            assert time.monotonic() < deadline, f"{victim} is not UP in the balancer 60 s after its start"
            time.sleep(0.1)
    page.wait_for_function(_all_healthy_js(nodes), timeout=20_000)


@pytest.fixture(scope="module")
def visited(lab, page):
    """A traced visit typed into the visit page."""
    page.goto(page.url.split("#")[0] + "#visit")
    page.fill("#visit-url", f"{lab.www}/?ui={uuid.uuid4().hex}")
    page.press("#visit-url", "Enter")
    page.wait_for_selector("#sequence .msg", timeout=VISIT_S * 1000)
    assert page.inner_text("#visit-error") == ""
    return page


def test_a_visit_from_the_page_shows_its_stages(lab, visited):
    stages = visited.eval_on_selector_all("#waterfall .stage", "els => els.map(e => e.dataset.stage)")
    for stage in ("lookup", "connect", "tls", "request", "server work", "response"):
        assert stage in stages, stages
    assert "status 200" in visited.inner_text("#visit-summary")
    lanes = visited.eval_on_selector_all("#sequence .lane-name", "els => els.map(e => e.textContent)")
    assert {"client", "router", "cache", "lb"} <= set(lanes)
    width = visited.eval_on_selector("#sequence-svg", "e => e.getAttribute('width')")
    assert float(width) <= visited.eval_on_selector("#sequence", "e => e.clientWidth"), "the diagram fits the window"
    visited.screenshot(path=str(SCREENS / f"visit-{lab.backend}.png"))


def test_the_router_hop_highlights_nat_and_mac_rewrite(lab, visited):
    router = lab.topology.nodes_of("router")[0].name
    visited.click(f'#sequence .msg[data-from="{router}"][data-nat="1"]')
    changed = set(visited.eval_on_selector_all("#layers .field.changed", "els => els.map(e => e.dataset.field)"))
    assert {"eth_src", "eth_dst", "ttl"} <= changed, changed  # routed: new MACs, one less TTL
    assert changed & {"src", "dst", "sport", "dport"}, changed  # NAT: an address or port rewritten
    explained = visited.inner_text("#layers .explain")
    assert "NAT" in explained and "MAC rewrite" in explained and "TTL" in explained
    assert f"{router}|" in visited.get_attribute("#visit-graph", "data-lit")
    visited.screenshot(path=str(SCREENS / f"visit-router-{lab.backend}.png"))


def test_the_tls_leg_is_drawn_decrypted(lab, visited):
    """The client-edge TLS records, decrypted with the client's key log: the arrow says what the
    record carried, and the header diagrams draw TLS (its cipher) over HTTP (its values)."""
    request = visited.locator("#sequence .msg.tls", has_text="TLS: HTTP GET").first
    request.click()
    layers = visited.eval_on_selector_all("#layers .header", "els => els.map(e => e.dataset.layer)")
    assert layers[-2:] == ["tls", "http"], layers
    assert visited.inner_text('#layers [data-field="http_method"] .value') == "GET"
    assert visited.inner_text('#layers [data-field="http_path"] .value').startswith("/?ui=")
    assert visited.inner_text('#layers [data-field="cipher"] .value') not in ("", "-")
    assert visited.inner_text('#layers [data-field="traceparent"] .value').startswith("00-")
    visited.screenshot(path=str(SCREENS / f"visit-tls-{lab.backend}.png"))


def test_step_through_moves_across_the_graph(lab, visited):
    visited.click('#sequence .msg[data-row="0"]')
    lit = [visited.get_attribute("#visit-graph", "data-lit")]
    for _ in range(min(40, visited.locator("#sequence .msg").count() - 1)):
        visited.keyboard.press("ArrowRight")
        lit.append(visited.get_attribute("#visit-graph", "data-lit"))
    assert "packet 1 /" not in visited.inner_text("#step-info")
    networks = {link.split("|")[1] for links in lit for link in links.split()}
    assert len(networks) >= 2, lit  # the packets crossed from one network to the next
    assert len(set(lit)) >= 3, lit
    visited.keyboard.press("ArrowLeft")
    assert visited.get_attribute("#visit-graph", "data-lit") == lit[-2]


def test_a_bad_url_shows_the_clis_error(lab, page):
    from helpers import hoplab

    bad = "ftp://www.example.test/"
    expected = hoplab("visit", bad, "--topology", lab.path, "--backend", lab.backend, check=False).stderr.strip()
    page.goto(page.url.split("#")[0] + "#visit")
    page.fill("#visit-url", bad)
    page.press("#visit-url", "Enter")
    page.wait_for_selector("#visit-error:not(:empty)", timeout=10_000)
    assert page.inner_text("#visit-error") == expected
    page.screenshot(path=str(SCREENS / f"visit-bad-url-{lab.backend}.png"))


def test_a_cross_origin_post_is_refused(lab, ui):
    request = urllib.request.Request(f"{ui}/api/visits", data=json.dumps({"url": f"{lab.www}/"}).encode(),
                                     headers={"Content-Type": "application/json", "Origin": "http://evil.example"},
                                     method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403


def test_the_trace_downloads_as_pcapng(lab, visited, ui):
    trace_id = visited.inner_text("#trace-id")
    with urllib.request.urlopen(f"{ui}/api/traces/{trace_id}?format=pcapng", timeout=30) as response:
        assert response.read(4) == b"\x0a\x0d\x0d\x0a"


def test_a_fault_injected_and_halted_from_the_page(lab, page):
    lb = lab.topology.nodes_of("lb")[0].name
    server = lab.topology.nodes_of("web")[-1].name
    page.goto(page.url.split("#")[0] + "#break")
    page.wait_for_selector("#fault-catalogue tr[data-fault]")
    page.select_option("#fault-name", "lb-backend-down")
    page.fill("#fault-target", lb)
    page.fill("#fault-params", f"server={server}")
    page.fill("#fault-duration", "60")
    page.click("#fault-inject")
    page.wait_for_selector("#active-faults li", timeout=30_000)
    injected = time.monotonic()
    page.wait_for_selector(f'#break-graph [data-node="{lb}"][data-faults="1"]', timeout=(LIVE_S + SLACK_S) * 1000)
    assert time.monotonic() - injected < LIVE_S + SLACK_S
    page.wait_for_function("() => / left$/.test(document.querySelector('#active-faults .countdown')?.textContent)",
                           timeout=3000)  # the countdown runs
    page.screenshot(path=str(SCREENS / f"break-{lab.backend}.png"))
    page.click("#fault-halt")
    page.wait_for_selector("#active-faults li", state="detached", timeout=30_000)
    assert "reverted" in page.inner_text("#fault-result")
    page.wait_for_selector(f'#break-graph [data-node="{lb}"][data-faults="0"]', timeout=(LIVE_S + SLACK_S) * 1000)
    deadline = time.monotonic() + 60
    while not _lb_sees(lab, server):
        assert time.monotonic() < deadline, f"{server} is not UP in the balancer 60 s after the halt"
        time.sleep(0.5)


def test_a_bad_fault_parameter_shows_the_clis_error(lab, page):
    from helpers import hoplab

    client = lab.clients()[0]
    iface = lab.topology.nodes[client].interfaces[0].network
    expected = hoplab("chaos", "inject", "packet-loss", "--target", f"{client}:{iface}", "--param", "percent=lots",
                      "--topology", lab.path, "--backend", lab.backend, check=False).stderr.strip()
    assert expected.startswith("hoplab chaos: --param percent:")
    page.goto(page.url.split("#")[0] + "#break")
    page.wait_for_selector("#fault-catalogue tr[data-fault]")
    page.select_option("#fault-name", "packet-loss")
    page.fill("#fault-target", f"{client}:{iface}")
    page.fill("#fault-params", "percent=lots")
    page.click("#fault-inject")
    page.wait_for_selector("#fault-error:not(:empty)", timeout=10_000)
    assert page.inner_text("#fault-error") == expected
    assert page.locator("#active-faults li").count() == 0


def _post(ui: str, path: str, body: dict) -> tuple[int, dict]:
    """A POST as the page makes it (its own origin)."""
    request = urllib.request.Request(f"{ui}{path}", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "Origin": ui})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


# Long enough that a request lands while the run still runs, on a loaded machine too (a 5 s run
# once ended with none: its users' first requests, TLS set up, still in flight at its end).
LOAD_S = 10


def test_a_load_run_from_the_page_shows_live_numbers_and_the_verdict(lab, page, ui):
    page.goto(page.url.split("#")[0] + "#load")
    page.wait_for_selector("#load-shape option[value=spike]", state="attached")
    page.fill("#load-users", "2")
    page.fill("#load-rate", "2")
    page.fill("#load-time", str(LOAD_S))
    page.click("#load-start")
    # Live: a sample of Locust's history while the run runs (read from the node, pushed over SSE).
    page.wait_for_function("() => document.querySelector('#load-state').dataset.state === 'running' && "
                           "Number(document.querySelector('#load-requests').textContent) > 0", timeout=60_000)
    assert page.inner_text("#load-requests") != "-" and page.inner_text("#load-p95") != "-"
    status, body = _post(ui, "/api/load/start", {"users": 2, "rate": 2, "time": LOAD_S})
    assert status == 409 and body["error"].startswith("hoplab load: a load run is already running"), body
    page.screenshot(path=str(SCREENS / f"load-live-{lab.backend}.png"))
    page.wait_for_selector("#load-verdict[data-met]", timeout=(LOAD_S + 60) * 1000)
    assert page.get_attribute("#load-verdict", "data-met") == "1", page.inner_text("#load-verdict")
    assert page.inner_text("#load-verdict").startswith("SLO met")
    assert int(page.get_attribute("#load-rps", "data-samples")) >= 3  # one a second, as Locust writes them
    assert "all" in page.inner_text("#load-endpoints")
    href = page.get_attribute("#load-report", "href")
    with urllib.request.urlopen(f"{ui}{href}", timeout=30) as response:
        assert response.status == 200 and b"locust" in response.read().lower()
    page.screenshot(path=str(SCREENS / f"load-{lab.backend}.png"))


def test_a_bad_load_parameter_shows_the_clis_error(lab, page):
    from helpers import hoplab

    expected = hoplab("load", "--users", "0", "--topology", lab.path, "--backend", lab.backend,
                      check=False).stderr.strip()
    assert expected == "hoplab load: --users: 0 is outside 1..5000"
    page.goto(page.url.split("#")[0] + "#load")
    page.wait_for_selector("#load-shape option[value=spike]", state="attached")
    page.fill("#load-users", "0")
    page.click("#load-start")
    page.wait_for_selector("#load-error:not(:empty)", timeout=10_000)
    assert page.inner_text("#load-error") == expected
    page.screenshot(path=str(SCREENS / f"load-bad-{lab.backend}.png"))
    page.fill("#load-users", "2")


def test_a_drill_started_hinted_and_given_up(lab, page):
    from helpers import hoplab

    page.goto(page.url.split("#")[0] + "#break")
    page.wait_for_selector("#drill-name option[value=https-refused]", state="attached")
    page.select_option("#drill-name", "https-refused")
    page.fill("#drill-duration", "60")
    try:
        page.click("#drill-start")
        page.wait_for_selector("#drill-symptom", timeout=30_000)
        assert "connection refused" in page.inner_text("#drill-symptom")
        assert "port-block" not in page.inner_text("#active-faults")  # the fault stays hidden
        assert page.locator('#break-graph [data-faults="1"]').count() == 0
        page.click("#drill-hint")
        page.wait_for_selector("#drill-hints li", timeout=10_000)
        page.click("#drill-hint")
        page.wait_for_function("() => document.querySelectorAll('#drill-hints li').length === 2", timeout=10_000)
        page.screenshot(path=str(SCREENS / f"drill-{lab.backend}.png"))
        page.click("#drill-give-up")
        page.wait_for_selector("#drill-fault", timeout=30_000)
        assert "port-block" in page.inner_text("#drill-fault")
        assert "iptables -D INPUT 1" in page.inner_text("#drill-fix")
        page.screenshot(path=str(SCREENS / f"drill-given-up-{lab.backend}.png"))
    finally:
        hoplab("drill", "give-up", "--topology", lab.path, "--backend", lab.backend, check=False)
    assert lab.exec(lab.clients()[0], "curl", "-sS", "-o", "/dev/null", "--max-time", "3", f"{lab.www}/edge-health",
                    check=False).returncode == 0


def test_diagnose_names_the_broken_hop_of_an_injected_fault(lab, page):
    edge = str(lab.topology.domain.records["www"])
    cache = next(n.name for n in lab.topology.nodes.values() if any(str(i.address) == edge for i in n.interfaces))
    page.goto(page.url.split("#")[0] + "#break")
    page.wait_for_selector("#fault-catalogue tr[data-fault]")
    page.select_option("#fault-name", "port-block")
    page.fill("#fault-target", cache)
    page.fill("#fault-params", "port=443")
    page.fill("#fault-duration", "60")
    try:
        page.click("#fault-inject")
        page.wait_for_selector("#active-faults li", timeout=30_000)
        page.click("#diagnose-run")
        page.wait_for_selector("#diagnose-hop", timeout=90_000)
        assert page.inner_text("#diagnose-hop") == "edge", page.inner_text("#diagnose-box")
        assert page.get_attribute("#break-graph", "data-broken") == cache
        assert page.locator(f'#break-graph [data-node="{cache}"].broken').count() == 1
        broken = page.eval_on_selector_all("#break-graph .link.broken", "els => els.map(e => e.dataset.link)")
        client = lab.clients()[0]
        ends = {link.split("|")[0] for link in broken}
        assert {client, cache} <= ends and len(broken) >= 4, broken  # the way there: client, router, edge
        page.screenshot(path=str(SCREENS / f"diagnose-{lab.backend}.png"))
    finally:
        page.click("#fault-halt")
        page.wait_for_selector("#active-faults li", state="detached", timeout=30_000)
