"""The host's side of the control plane: a thin client for hoplab.v1.Control on the control
service's API port (`Management.api_port`), every call carrying the lab's token
(`Backend.control_token`) as `authorization: Bearer TOKEN` metadata."""

from __future__ import annotations

import grpc

from hoplab.backends.base import Backend, BackendError
from hoplab.spec import Topology
from hoplab.v1 import control_pb2 as pb
from hoplab.v1 import control_pb2_grpc as rpc

TIMEOUT_S = 15


class ControlClient:
    def __init__(self, topology: Topology, token: str):
        if topology.management is None:
            raise BackendError(f"{topology.source}: no `management` section, so no control service to trace with")
        self.target = f"{topology.management.control}:{topology.management.api_port}"
        self.metadata = (("authorization", f"Bearer {token}"),)
        self.channel = grpc.insecure_channel(self.target)
        self.stub = rpc.ControlStub(self.channel)

    @classmethod
    def of(cls, backend: Backend, topology: Topology) -> "ControlClient":
        """The client of the lab `backend` runs, with the token it made at `up`."""
        if topology.management is None:
            raise BackendError(f"{topology.source}: no `management` section, so no control service to trace with")
        return cls(topology, backend.control_token(topology))

    def _call(self, method: str, request, timeout: float = TIMEOUT_S):
        try:
            return getattr(self.stub, method)(request, timeout=timeout, metadata=self.metadata)
        except grpc.RpcError as exc:
            raise BackendError(f"control service at {self.target}: {exc.code().name}: {exc.details()}") from None

    def nodes(self, timeout: float = TIMEOUT_S) -> list[pb.Node]:
        return list(self._call("ListNodes", pb.ListNodesRequest(), timeout).nodes)

    def start(self, *, filter: str, max_seconds: int, max_packets: int, trace_id: str = "", url: str = "",
              nodes: list[str] | None = None) -> pb.Capture:
        return self._call("StartCapture", pb.StartCaptureRequest(
            nodes=nodes or [], filter=filter, max_seconds=max_seconds, max_packets=max_packets,
            trace_id=trace_id, url=url))

    def stop(self, capture_id: str, status: int = 0, drops=(), kernel_view: str = "", accepts=(),
             tls_keylog: str = "", binds=()) -> pb.Capture:
        return self._call("StopCapture", pb.StopCaptureRequest(id=capture_id, status=status, drops=drops,
                                                               kernel_view=kernel_view, accepts=accepts,
                                                               binds=binds, tls_keylog=tls_keylog))

    def trace(self, trace_id: str, tls_keylog: str = "", raw: bool = False, *, capture_id: str = "",
              window: tuple[int, int] = (0, 0), timeout: float = TIMEOUT_S) -> pb.Trace:
        """The assembled trace; `tls_keylog` adds session keys to decrypt with (NSS key log text);
        `raw`: frames as captured, credentials included (else masked by the service). With
        `capture_id` and its client's `window` (start, end ns): one request of many that capture
        saw, by the trace id it carried (a load run's sample)."""
        return self._call("GetTrace", pb.GetTraceRequest(trace_id=trace_id, tls_keylog=tls_keylog, raw=raw,
                                                         capture_id=capture_id, start_ns=window[0],
                                                         end_ns=window[1]), timeout)

    def traces(self) -> list[pb.TraceSummary]:
        return list(self._call("ListTraces", pb.ListTracesRequest()).traces)

    def close(self) -> None:
        self.channel.close()
