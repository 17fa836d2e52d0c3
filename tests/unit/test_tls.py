"""TLS decryption from a key log, on sessions OpenSSL really ran (Python's ssl module over memory
buffers, with its own SSLKEYLOGFILE support): the bytes go into Ethernet/IPv4/TCP frames as a
capture would see them, and the trace must read the HTTP inside."""

import datetime
import shutil
import ssl
import struct
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hoplab.trace import render
from hoplab.trace.assemble import assemble
from hoplab.trace.tls import KeyLog, KeyLogError, decrypt
from hoplab.v1 import control_pb2 as pb

CLIENT, SERVER = ("192.168.50.190", 43224), ("198.51.100.80", 443)
TRACEPARENT = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
REQUEST = (b"GET /order HTTP/1.1\r\nHost: www.example.test\r\ntraceparent: " + TRACEPARENT.encode()
           + b"\r\n\r\n")
RESPONSE = b"HTTP/1.1 200 OK\r\nX-Cache: MISS\r\nContent-Length: 3000\r\n\r\n" + b"x" * 3000


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "www.example.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    (folder / "www.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "www.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return folder


def session(certificate, tmp_path, version, ciphers=None):
    """A real TLS session: the byte chunks each side sent, in order, and the key log."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(certificate / "www.crt", certificate / "www.key")
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname, client_ctx.verify_mode = False, ssl.CERT_NONE
    for ctx in (server_ctx, client_ctx):
        ctx.minimum_version = ctx.maximum_version = version
    if ciphers:
        client_ctx.set_ciphers(ciphers)
    client_ctx.keylog_filename = str(tmp_path / "keys.log")
    wire = [ssl.MemoryBIO() for _ in range(4)]
    client = client_ctx.wrap_bio(wire[0], wire[1], server_hostname="www.example.test")
    server = server_ctx.wrap_bio(wire[2], wire[3], server_side=True)
    chunks = []

    def pump():
        for sender, receiver, source in ((CLIENT, wire[2], wire[1]), (SERVER, wire[0], wire[3])):
            data = source.read()
            if data:
                chunks.append((sender, data))
                receiver.write(data)

    def step(call):
        try:
            return call()
        except ssl.SSLWantReadError:
            return None

    for _ in range(10):
        done = [step(client.do_handshake) is not None or client.version() is not None]
        step(server.do_handshake)
        pump()
    client.write(REQUEST)
    pump()
    assert server.read(4096) == REQUEST
    server.write(RESPONSE)
    pump()
    got = b""
    while len(got) < len(RESPONSE):
        got += client.read(65536)
    assert got == RESPONSE and done
    client_ctx.keylog_filename = None
    return chunks, (tmp_path / "keys.log").read_text()


def frame(src, dst, seq, payload, ttl=64):
    tcp = struct.pack("!HHIIBBHHH", src[1], dst[1], seq, 0, 5 << 4, 0x18, 65535, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), 1, 0, ttl, 6, 0,
                     bytes(map(int, src[0].split("."))), bytes(map(int, dst[0].split("."))))
    return b"\x02\0\0\0\0\x01\x02\0\0\0\0\x02\x08\x00" + ip + tcp + payload


def hops_of(chunks, node="client", iface="home", retransmit=None, mss=1400):
    """One hop per TCP segment of the session, as the client's capture would see it."""
    hops, seqs, ts = [], {CLIENT: 1000, SERVER: 5000}, 1
    for sender, data in chunks:
        receiver = SERVER if sender == CLIENT else CLIENT
        for off in range(0, len(data), mss):
            part = data[off:off + mss]
            copies = 2 if retransmit is not None and len(hops) == retransmit else 1
            for _ in range(copies):
                record = pb.Record(node=node, iface=iface, direction="out" if sender == CLIENT else "in", ts_ns=ts,
                                   proto="tls", src=f"{sender[0]}:{sender[1]}", dst=f"{receiver[0]}:{receiver[1]}",
                                   tcp_flags="PSH,ACK", tcp_seq=seqs[sender], frame=frame(sender, receiver,
                                                                                        seqs[sender], part))
                hops.append(pb.Hop(record=record))
                ts += 1
            seqs[sender] += len(part)
    return hops


@pytest.mark.parametrize("version, ciphers, cipher", [
    (ssl.TLSVersion.TLSv1_3, None, "TLS1.3 TLS_AES_256_GCM_SHA384"),
    (ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-GCM-SHA256", "TLS1.2 ECDHE-ECDSA-AES128-GCM-SHA256"),
    (ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES256-GCM-SHA384", "TLS1.2 ECDHE-ECDSA-AES256-GCM-SHA384"),
    (ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-CHACHA20-POLY1305", "TLS1.2 ECDHE-ECDSA-CHACHA20-POLY1305"),
])
def test_the_http_inside_a_real_session_is_read_where_each_record_ends(certificate, tmp_path, version, ciphers,
                                                                       cipher):
    chunks, key_text = session(certificate, tmp_path, version, ciphers)
    hops = hops_of(chunks, retransmit=3)  # a retransmitted segment is counted once
    readout = decrypt(hops, KeyLog.parse(key_text))
    assert readout.problems == [] and readout.sessions == 1
    said = {index: plain for index, plain in readout.hops.items()}
    request = [i for i, p in said.items() if p.summary.startswith("HTTP GET")]
    response = [i for i, p in said.items() if p.summary.startswith("HTTP 200")]
    assert len(request) == 1 and len(response) == 1
    plain = said[request[0]]
    assert plain.summary == "HTTP GET /order" and plain.cipher == cipher
    assert plain.keys["http_host"] == "www.example.test" and plain.keys["traceparent"] == TRACEPARENT
    assert said[response[0]].keys["x_cache"] == "MISS"
    # the request's record ends in the client's last segment before the response
    assert hops[request[0]].record.src.startswith(CLIENT[0]) and request[0] < response[0]
    assert any("Finished" in p.summary for p in said.values())


def test_without_the_right_keys_nothing_is_read_and_the_session_is_named(certificate, tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    chunks, _ = session(certificate, tmp_path / "a", ssl.TLSVersion.TLSv1_3)
    _, other_keys = session(certificate, tmp_path / "b", ssl.TLSVersion.TLSv1_3)
    readout = decrypt(hops_of(chunks), KeyLog.parse(other_keys))
    assert readout.hops == {} and readout.sessions == 0
    assert readout.problems == [("client", "home 192.168.50.190:43224 > 198.51.100.80:443: "
                                           "the key log has no keys for this session")]


def test_wrong_secrets_for_the_session_stop_at_the_first_record_and_say_so(certificate, tmp_path):
    chunks, key_text = session(certificate, tmp_path, ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-GCM-SHA256")
    label, random, _ = key_text.splitlines()[-1].split()
    wrong = KeyLog.parse(f"{label} {random} {'00' * 48}\n")
    readout = decrypt(hops_of(chunks), wrong)
    assert readout.hops == {}
    assert any("would not decrypt" in why for _, why in readout.problems)


def test_a_missing_segment_is_named_not_guessed(certificate, tmp_path):
    chunks, key_text = session(certificate, tmp_path, ssl.TLSVersion.TLSv1_3)
    hops = hops_of(chunks, mss=200)
    lost = next(i for i, h in enumerate(hops) if h.record.direction == "in" and i > 3)
    del hops[lost]
    readout = decrypt(hops, KeyLog.parse(key_text))
    assert any("bytes missing from the capture" in why for _, why in readout.problems)


def test_a_server_hello_cut_before_its_session_id_is_named_not_a_crash():
    """A ServerHello record of 38 bytes (type, length, version, random; no session id) was an
    IndexError that took the whole trace's decryption down."""
    random = bytes(range(32))
    client_hello = b"\x16\x03\x01\x00\x26" + b"\x01\x00\x00\x22\x03\x03" + random
    server_hello = b"\x16\x03\x03\x00\x26" + b"\x02\x00\x00\x22\x03\x03" + bytes(32)
    hops = hops_of([(CLIENT, client_hello), (SERVER, server_hello)])
    readout = decrypt(hops, KeyLog.parse(f"CLIENT_RANDOM {random.hex()} {'00' * 48}\n"))
    assert readout.problems == [("client", "home 192.168.50.190:43224 > 198.51.100.80:443: "
                                           "the ServerHello was not captured")]


def test_the_trace_carries_the_decryption_in_its_hops_and_the_keys(certificate, tmp_path):
    chunks, key_text = session(certificate, tmp_path, ssl.TLSVersion.TLSv1_3)
    hops = hops_of(chunks)
    trace = assemble("ab" * 16, "https://www.example.test/order", "c1", [h.record for h in hops], {"client"},
                     key_log=KeyLog.parse(key_text))
    assert not trace.gaps and trace.tls_keylog == KeyLog.parse(key_text).text
    assert trace.status == 200
    read = [h.decrypted.summary for h in trace.hops if h.HasField("decrypted")]
    assert "HTTP GET /order" in read and any(s.startswith("HTTP 200 OK") for s in read)


@pytest.mark.parametrize("text, words", [
    ("CLIENT_RANDOM 00 " + "11" * 48 + "\n", "line 1: the client random must be 32 bytes"),
    ("# comment\nCLIENT_RANDOM " + "00" * 32 + " " + "11" * 47 + "\n", "line 2: a CLIENT_RANDOM secret is 48 bytes"),
    ("CLIENT_TRAFFIC_SECRET_0 " + "00" * 32 + " " + "11" * 20, "line 1: a CLIENT_TRAFFIC_SECRET_0 secret is 32 or 48"),
    ("hello world\n", "line 1: expected 'LABEL <client random> <secret>'"),
    ("CLIENT_RANDOM " + "zz" * 32 + " " + "11" * 48, "line 1: expected"),
    ("CLIENT_RANDOM " + "00" * 32 + " " + "1" * 95, "line 1: the secret has an odd number"),
    ("CLIENT_RANDOM " + "00" * 32 + " " + "11" * 48 + "; rm -rf /", "line 1: expected"),
])
def test_a_malformed_key_log_is_refused_with_its_line(text, words):
    with pytest.raises(KeyLogError) as error:
        KeyLog.parse(text, source="keys.log")
    assert str(error.value).startswith("keys.log: ") and words in str(error.value)


def test_key_logs_merge_and_keep_their_lines():
    a = KeyLog.parse("CLIENT_RANDOM " + "00" * 32 + " " + "11" * 48 + "\n")
    b = KeyLog.parse("# from a browser\nEXPORTER_SECRET " + "01" * 32 + " " + "22" * 32)
    both = a.merged(b)
    assert set(both.secrets) == {bytes(32), bytes([1]) * 32} and both.text.count("\n") == 2
    assert not KeyLog.parse("") and KeyLog.parse("").text == ""


@pytest.mark.skipif(not shutil.which("tshark"), reason="tshark is the reference")
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
def test_wireshark_reads_the_http_in_the_pcapng_with_no_set_up(certificate, tmp_path, version):
    """The pcapng carries the keys as a Decryption Secrets Block: tshark, given no key log
    file of its own, shows the request and the response."""
    chunks, key_text = session(certificate, tmp_path, version)
    trace = assemble("ab" * 16, "https://www.example.test/order", "c1", [h.record for h in hops_of(chunks)],
                     {"client"}, key_log=KeyLog.parse(key_text))
    path = tmp_path / "trace.pcapng"
    path.write_bytes(render.to_pcapng(trace))
    fields = ["http.request.method", "http.request.uri", "http.host", "http.response.code"]
    out = subprocess.run(["tshark", "-n", "-r", str(path), "-Y", "http", "-T", "fields",
                          *(arg for field in fields for arg in ("-e", field))],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    rows = [line.split("\t") for line in out.splitlines()]
    assert ["GET", "/order", "www.example.test", ""] in rows and ["", "", "", "200"] in rows, out
    # and without the block, the same packets stay sealed
    trace.tls_keylog = ""
    path.write_bytes(render.to_pcapng(trace))
    sealed = subprocess.run(["tshark", "-n", "-r", str(path), "-Y", "http"], capture_output=True, text=True,
                            timeout=60, check=True).stdout
    assert sealed.strip() == ""
