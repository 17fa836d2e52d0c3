"""The control service's two doors, served for real on loopback: agents attach on one port
(AgentHub and health only); the Control API on the other answers only a caller with the lab's
token from the host's address (UNAUTHENTICATED / PERMISSION_DENIED otherwise), reflection
included; health stays open. And the token: made once, mode 0600, read back by the client."""

from __future__ import annotations

import socket
import stat

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from hoplab.backends.base import BackendError, ensure_control_token, read_control_token
from hoplab.control import server
from hoplab.v1 import control_pb2 as pb
from hoplab.v1 import control_pb2_grpc as rpc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "lab" / "control.token"
    ensure_control_token(path)
    return path


def start(token_file, host="127.0.0.1"):
    agents_port, api_port = free_port(), free_port()
    agents, api = server.serve(f"127.0.0.1:{agents_port}", f"127.0.0.1:{api_port}", str(token_file), host)
    return agents, api, agents_port, api_port


@pytest.fixture
def doors(token_file):
    agents, api, agents_port, api_port = start(token_file)
    yield agents_port, api_port, read_control_token(token_file)
    agents.stop(0)
    api.stop(0)


def call(port, method="ListNodes", request=None, token=None):
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = rpc.ControlStub(channel)
        metadata = (("authorization", f"Bearer {token}"),) if token is not None else None
        answer = getattr(stub, method)(request or pb.ListNodesRequest(), timeout=5, metadata=metadata)
        return next(answer) if method == "StreamRecords" else answer


def refused(fn) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        fn()
    return caught.value.code()


def test_the_host_with_the_token_is_answered(doors):
    _, api_port, token = doors
    assert list(call(api_port, token=token).nodes) == []
    assert list(call(api_port, "ListTraces", pb.ListTracesRequest(), token=token).traces) == []


@pytest.mark.parametrize("given", [None, "", "nope", "0" * 64, "Bearer"])
def test_control_without_the_token_is_unauthenticated(doors, given):
    _, api_port, token = doors
    assert refused(lambda: call(api_port, token=given)) == grpc.StatusCode.UNAUTHENTICATED
    # every method, streaming ones included
    assert refused(lambda: call(api_port, "StreamRecords", pb.StreamRecordsRequest(capture_id="x"),
                                token=given)) == grpc.StatusCode.UNAUTHENTICATED
    assert refused(lambda: call(api_port, "StartCapture", pb.StartCaptureRequest(filter="ip", max_seconds=1,
                                                                                 max_packets=1), token=given)) \
        == grpc.StatusCode.UNAUTHENTICATED


def test_the_token_from_another_address_is_permission_denied(token_file):
    agents, api, _, api_port = start(token_file, host="172.31.254.254")  # the host is elsewhere
    try:
        assert refused(lambda: call(api_port, token=read_control_token(token_file))) \
            == grpc.StatusCode.PERMISSION_DENIED
    finally:
        agents.stop(0)
        api.stop(0)


def test_no_token_file_closes_the_api(tmp_path):
    agents, api, _, api_port = start(tmp_path / "missing")
    try:
        assert refused(lambda: call(api_port, token="")) == grpc.StatusCode.UNAUTHENTICATED
    finally:
        agents.stop(0)
        api.stop(0)


def test_the_agents_door_serves_no_control_api(doors):
    agents_port, _, token = doors
    assert refused(lambda: call(agents_port, token=token)) == grpc.StatusCode.UNIMPLEMENTED


def reflect(port, token=None):
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        metadata = (("authorization", f"Bearer {token}"),) if token else None
        answers = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5, metadata=metadata)
        return {s.name for s in next(answers).list_services_response.service}


def test_reflection_only_with_the_token_and_never_on_the_agents_door(doors):
    agents_port, api_port, token = doors
    assert {"hoplab.v1.Control", "grpc.health.v1.Health"} <= reflect(api_port, token)
    assert refused(lambda: reflect(api_port)) == grpc.StatusCode.UNAUTHENTICATED
    assert refused(lambda: reflect(agents_port)) == grpc.StatusCode.UNIMPLEMENTED


def test_health_is_open_on_both_doors(doors):
    agents_port, api_port, _ = doors
    for port, service in ((agents_port, "hoplab.v1.AgentHub"), (api_port, "hoplab.v1.Control")):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_the_token_is_made_once_private_and_kept(tmp_path):
    path = tmp_path / "lab" / "control.token"
    token = ensure_control_token(path)
    assert len(token) == 64 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_control_token(path) == token  # `up` again keeps it: the running service holds it
    path.write_text("not a token\n")
    with pytest.raises(BackendError, match="not a Control API token"):
        read_control_token(path)
    with pytest.raises(BackendError, match="is the lab up"):
        read_control_token(tmp_path / "nowhere")
