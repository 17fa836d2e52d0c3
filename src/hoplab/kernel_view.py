"""The host kernel's drops of lab packets while something is watched (a traced visit, a
diagnose check): hoplab.trace.kernel's eBPF tracer on skb:kfree_skb, its drops named by node;
and, from the same tracer, the lab's TCP connections and the processes that accepted them, and
the bind() calls the kernel refused a lab node's process (a daemon that cannot take its port)."""

from __future__ import annotations

from collections import Counter

from hoplab.backends.base import Backend
from hoplab.spec import Topology
from hoplab.trace import kernel
from hoplab.v1 import control_pb2 as pb


class KernelView:
    """`with KernelView(...) as view:` watches while the block runs; `view.drops` afterwards, or
    `view.unavailable` says why the kernel could not be watched here. Default-on: a host that
    cannot run it still traces and diagnoses, and says "kernel view unavailable: REASON"."""

    def __init__(self, backend: Backend, topology: Topology, max_seconds: float):
        self.backend, self.topology, self.max_seconds = backend, topology, max_seconds
        self.tracer = kernel.KernelTracer()
        self.drops: list[pb.KernelDrop] = []
        self.accepts: list[pb.KernelAccept] = []
        self.binds: list[pb.KernelBind] = []
        self.unavailable = self.tracer.can_run()

    def __enter__(self) -> "KernelView":
        if self.unavailable is None:
            subnets = tuple(str(n.subnet) for n in self.topology.networks.values())  # data networks only
            try:
                self.tracer.start(kernel.DropFilter(subnets=subnets, max_seconds=self.max_seconds))
            except kernel.KernelTracerError as exc:
                self.unavailable = str(exc)
        return self

    def __exit__(self, *exc) -> None:
        if self.unavailable is None:
            names = kernel.namespace_map(self.backend.node_pids(self.topology))
            self.drops = [pb.KernelDrop(ts_ns=d.ts_ns, node=d.node, iface=d.ifname, src=d.src, dst=d.dst,
                                        proto=d.proto, reason=d.reason, location=d.location, words=d.words)
                          for d in kernel.with_nodes(self.tracer.stop(), names)
                          if d.node]  # no node: another lab's namespace (labs may share subnets)
            self.accepts = [pb.KernelAccept(ts_ns=a.ts_ns, node=a.node, pid=a.node_pid, host_pid=a.pid,
                                            tid=a.node_tid, process=a.comm, local=a.local, remote=a.remote,
                                            listener=a.listener, backlog=a.backlog, accept_queue=a.accept_queue)
                            for a in kernel.with_nodes(self.tracer.accepts, names)
                            if a.node and a.node != kernel.HOST]  # a lab node's processes only
            self.binds = [pb.KernelBind(ts_ns=b.ts_ns, node=b.node, pid=b.node_pid, host_pid=b.pid, process=b.comm,
                                        address=b.address, proto=b.proto, error=b.error, words=b.words)
                          for b in kernel.with_nodes(self.tracer.binds, names) if b.node and b.node != kernel.HOST]

    @property
    def status(self) -> str:
        return "" if self.unavailable is None else f"unavailable: {self.unavailable}"

    def summary(self) -> list[str]:
        """The drops, one line per node, reason and flow, then the refused binds, one line per
        node, process and address: what diagnose cites."""
        counted = Counter((d.node or kernel.HOST, d.reason, d.words, d.location, d.src, d.dst) for d in self.drops)
        refused = Counter((b.node, b.process, b.pid, b.address, b.proto, b.words, b.error) for b in self.binds)
        return [*(f"{count} x at {node}: {src} > {dst}: {words} ({reason}{' in ' + where if where else ''})"
                  for (node, reason, words, where, src, dst), count in counted.items()),
                *(f"{count} x at {node}: {process} (pid {pid}) could not bind {address}{'/' + proto if proto else ''}: "
                  f"{words} ({error})"
                  for (node, process, pid, address, proto, words, error), count in refused.items())]
