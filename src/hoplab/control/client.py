"""The CLI's side of the control plane: a thin client for hoplab.v1.Control at the address
the topology gives the control service."""

from __future__ import annotations

import grpc

from hoplab.backends.base import BackendError
from hoplab.spec import Topology
from hoplab.v1 import control_pb2 as pb
from hoplab.v1 import control_pb2_grpc as rpc

TIMEOUT_S = 15


class ControlClient:
    def __init__(self, topology: Topology):
        if topology.management is None:
            raise BackendError(f"{topology.source}: no `management` section, so no control service to trace with")
        self.target = f"{topology.management.control}:{topology.management.port}"
        self.channel = grpc.insecure_channel(self.target)
        self.stub = rpc.ControlStub(self.channel)

    def _call(self, method: str, request, timeout: float = TIMEOUT_S):
        try:
            return getattr(self.stub, method)(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise BackendError(f"control service at {self.target}: {exc.code().name}: {exc.details()}") from None

    def nodes(self) -> list[pb.Node]:
        return list(self._call("ListNodes", pb.ListNodesRequest()).nodes)

    def start(self, *, filter: str, max_seconds: int, max_packets: int, trace_id: str = "", url: str = "",
              nodes: list[str] | None = None) -> pb.Capture:
        return self._call("StartCapture", pb.StartCaptureRequest(
            nodes=nodes or [], filter=filter, max_seconds=max_seconds, max_packets=max_packets,
            trace_id=trace_id, url=url))

    def stop(self, capture_id: str, status: int = 0, drops=(), kernel_view: str = "", accepts=(),
             tls_keylog: str = "") -> pb.Capture:
        return self._call("StopCapture", pb.StopCaptureRequest(id=capture_id, status=status, drops=drops,
                                                               kernel_view=kernel_view, accepts=accepts,
                                                               tls_keylog=tls_keylog))

    def trace(self, trace_id: str, tls_keylog: str = "") -> pb.Trace:
        """The assembled trace; `tls_keylog` adds session keys to decrypt with (NSS key log text)."""
        return self._call("GetTrace", pb.GetTraceRequest(trace_id=trace_id, tls_keylog=tls_keylog))

    def traces(self) -> list[pb.TraceSummary]:
        return list(self._call("ListTraces", pb.ListTracesRequest()).traces)

    def close(self) -> None:
        self.channel.close()
