"""Credentials in frames: masked with '*' in everything the control service hands out (an
assembled trace, streamed records) unless the caller asks for raw frames; the pcapng and JSON say
which they hold, and `hoplab trace show` says it on stderr."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess

import pytest

from hoplab import cli
from hoplab.control import client as control_client
from hoplab.control.server import CaptureState, ControlService, Hub
from hoplab.trace import render
from hoplab.trace.credentials import Masker
from hoplab.trace.decode import decode
from hoplab.v1 import control_pb2 as pb
from test_decode import tcp_frame

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT, MAIL, WEB, DB = "192.168.50.190", "198.51.100.25", "172.31.50.11", "172.31.50.20"
PASSWORD = b"s3cret-Pw"
PLAIN = base64.b64encode(b"\0alice\0" + PASSWORD)


def to_mail(payload: bytes, port: int = 143, seq: int = 1000) -> bytes:
    return tcp_frame(CLIENT, MAIL, 41001, port, payload, seq=seq)


def from_mail(payload: bytes, port: int = 143) -> bytes:
    return tcp_frame(MAIL, CLIENT, port, 41001, payload)


def pg_password(body: bytes) -> bytes:
    return b"p" + (4 + len(body)).to_bytes(4, "big") + body


def masked(frames: list[bytes]) -> tuple[list[bytes], int]:
    masker = Masker()
    return [masker.frame(f, ("client", "home")) for f in frames], masker.masked


@pytest.mark.parametrize("frames, secret, kept", [
    ([to_mail(b"a1 LOGIN alice " + PASSWORD + b"\r\n")], PASSWORD, b"a1 LOGIN alice "),
    ([to_mail(b'a1 login "alice" "' + PASSWORD + b'"\r\n')], PASSWORD, b'a1 login "alice" '),
    ([to_mail(b"a1 AUTHENTICATE PLAIN " + PLAIN + b"\r\n")], PLAIN, b"a1 AUTHENTICATE PLAIN "),
    ([to_mail(b"a1 AUTHENTICATE PLAIN\r\n"), from_mail(b"+ \r\n"), to_mail(PLAIN + b"\r\n", seq=1024)], PLAIN, b""),
    ([to_mail(b"AUTH PLAIN " + PLAIN + b"\r\n", 587)], PLAIN, b"AUTH PLAIN "),
    ([to_mail(b"AUTH LOGIN\r\n", 25), from_mail(b"334 VXNlcm5hbWU6\r\n", 25),
      to_mail(base64.b64encode(b"alice") + b"\r\n", 25, seq=1012), from_mail(b"334 UGFzc3dvcmQ6\r\n", 25),
      to_mail(base64.b64encode(PASSWORD) + b"\r\n", 25, seq=1022)], base64.b64encode(PASSWORD), b""),
    ([tcp_frame(WEB, DB, 40000, 5432, pg_password(PASSWORD + b"\0"))], PASSWORD, b"p"),
    ([tcp_frame(WEB, DB, 40000, 5432, pg_password(b"SCRAM-SHA-256\0" + b"n,,n=,r=" + PASSWORD))], PASSWORD, b"p"),
])
def test_a_credential_is_blanked_in_place(frames, secret, kept):
    out, count = masked(frames)
    last = out[-1]
    assert secret in frames[-1] and secret not in last
    assert len(last) == len(frames[-1])  # the same length: TCP sequence numbers still add up
    assert decode(last).payload.startswith(kept) and b"*" * 8 in last
    # AUTH LOGIN sends the user name as an answer too: that frame is masked as well
    assert count == (2 if frames[0].endswith(b"AUTH LOGIN\r\n") else 1)


def test_frames_without_credentials_are_left_alone():
    frames = [to_mail(b"a2 SELECT INBOX\r\n"), from_mail(b"* OK [CAPABILITY IMAP4rev1] ready\r\n"),
              to_mail(b"MAIL FROM:<shop@example.test>\r\n", 25), tcp_frame(WEB, DB, 40000, 5432, b"Q\0\0\0\x0dSELECT 1\0"),
              tcp_frame(CLIENT, MAIL, 41001, 80, b"GET /?password=x HTTP/1.1\r\n\r\n"), b"", b"\x00" * 10]
    out, count = masked(frames)
    assert out == frames and count == 0


def test_after_the_server_moves_on_client_lines_are_not_taken_for_answers():
    frames = [to_mail(b"AUTH LOGIN\r\n", 25), from_mail(b"334 VXNlcm5hbWU6\r\n", 25),
              to_mail(b"YWxpY2U=\r\n", 25), from_mail(b"235 2.7.0 Authentication successful\r\n", 25),
              to_mail(b"MAIL FROM:<alice@example.test>\r\n", 25)]
    out, _ = masked(frames)
    assert b"YWxpY2U=" not in out[2] and out[4] == frames[4]


def test_a_challenge_is_remembered_per_capture_point():
    """Two nodes' batches interleave in a stream: one node's view of the server moving on must
    not unmask the answer another node has yet to report."""
    answer = to_mail(PLAIN + b"\r\n", seq=1024)
    masker = Masker()
    masker.frame(from_mail(b"+ \r\n"), ("mail", "internet"))
    for frame in (from_mail(b"+ \r\n"), answer, from_mail(b"a1 OK done\r\n")):
        masker.frame(frame, ("client", "home"))
    assert PLAIN not in masker.frame(answer, ("mail", "internet"))


# ------------------------------------------------------------ through the control service

LOGIN = to_mail(b"a1 LOGIN buyer " + PASSWORD + b"\r\n")


def service_with_capture() -> ControlService:
    hub = Hub()
    record = pb.Record(capture_id="c1", node="client", iface="home", direction="out", src=f"{CLIENT}:41001",
                       dst=f"{MAIL}:143", proto="imap", tcp_flags="PA", tcp_seq=1000, ts_ns=1, frame=LOGIN,
                       length=len(LOGIN), summary="IMAP a1 LOGIN buyer ***")
    capture = CaptureState("c1", ["client"], "ip", TRACE, "https://www.example.test/", 10, 10**18,
                           services={"client": "client"}, records=[record])
    capture.state = "stopped"
    hub.captures["c1"] = capture
    return ControlService(hub)


class Context:
    def is_active(self):
        return True

    def abort(self, code, details):
        raise AssertionError(f"{code}: {details}")


def test_streamed_records_are_masked_and_marked_unless_raw():
    service = service_with_capture()
    [record] = service.StreamRecords(pb.StreamRecordsRequest(capture_id="c1"), Context())
    assert PASSWORD not in record.frame and record.masked
    [raw] = service.StreamRecords(pb.StreamRecordsRequest(capture_id="c1", raw=True), Context())
    assert raw.frame == LOGIN and not raw.masked
    again = list(service.StreamRecords(pb.StreamRecordsRequest(capture_id="c1", raw=True), Context()))
    assert again[0].frame == LOGIN  # masking a stream never changed what the capture keeps


def test_a_trace_is_masked_unless_raw_and_its_outputs_say_which():
    service = service_with_capture()
    trace = service.GetTrace(pb.GetTraceRequest(trace_id=TRACE), Context())
    assert (trace.raw, trace.masked_frames) == (False, 1) and trace.hops[0].record.masked
    pcapng = render.to_pcapng(trace)
    assert PASSWORD not in pcapng and b"credentials masked with '*' in 1 frame(s)" in pcapng
    assert b"[credentials masked]" in pcapng
    as_json = render.to_json(trace)
    assert as_json["credentials"]["raw"] is False and as_json["credentials"]["masked_frames"] == 1
    assert as_json["hops"][0]["credentials_masked"] is True

    raw = service.GetTrace(pb.GetTraceRequest(trace_id=TRACE, raw=True), Context())
    assert raw.raw and raw.masked_frames == 0 and raw.hops[0].record.frame == LOGIN
    pcapng = render.to_pcapng(raw)
    assert PASSWORD in pcapng and b"RAW: frames as captured, credentials" in pcapng
    assert render.to_json(raw)["credentials"]["raw"] is True


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_wireshark_reads_the_masked_file_and_its_comment(tmp_path):
    trace = service_with_capture().GetTrace(pb.GetTraceRequest(trace_id=TRACE), Context())
    path = tmp_path / "t.pcapng"
    path.write_bytes(render.to_pcapng(trace))
    shown = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "imap.request"],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "LOGIN buyer *********" in shown.stdout and PASSWORD.decode() not in shown.stdout
    info = subprocess.run(["capinfos", str(path)], capture_output=True, text=True, timeout=60)
    assert "credentials masked" in info.stdout


@pytest.mark.parametrize("flags, said", [((), "credentials masked with '*' in 1 frame(s)"),
                                         (("--raw",), "RAW: frames as captured")])
def test_trace_show_says_on_stderr_what_the_file_holds(tmp_path, monkeypatch, capsys, flags, said):
    service = service_with_capture()

    class Control:
        def trace(self, trace_id, tls_keylog="", raw=False):
            return service.GetTrace(pb.GetTraceRequest(trace_id=trace_id, tls_keylog=tls_keylog, raw=raw), Context())

    monkeypatch.setattr(control_client.ControlClient, "of", staticmethod(lambda backend, topology: Control()))
    out = tmp_path / "t.pcapng"
    code = cli.main(["trace", "show", TRACE, "--backend", "netns", "--format", "pcapng", "-o", str(out), *flags])
    assert code == 0
    assert f"hoplab trace: {said}" in capsys.readouterr().err
    assert (PASSWORD in out.read_bytes()) == bool(flags)
    code = cli.main(["trace", "show", TRACE, "--backend", "netns", "--format", "json", *flags])
    captured = capsys.readouterr()
    assert code == 0 and json.loads(captured.out)["credentials"]["raw"] is bool(flags)
