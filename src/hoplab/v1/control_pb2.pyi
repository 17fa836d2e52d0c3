from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Interface(_message.Message):
    __slots__ = ("name", "address", "mac")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    MAC_FIELD_NUMBER: _ClassVar[int]
    name: str
    address: str
    mac: str
    def __init__(self, name: _Optional[str] = ..., address: _Optional[str] = ..., mac: _Optional[str] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("name", "service", "interfaces", "last_error", "last_error_ns", "restarts")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    INTERFACES_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_NS_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    service: str
    interfaces: _containers.RepeatedCompositeFieldContainer[Interface]
    last_error: str
    last_error_ns: int
    restarts: int
    def __init__(self, name: _Optional[str] = ..., service: _Optional[str] = ..., interfaces: _Optional[_Iterable[_Union[Interface, _Mapping]]] = ..., last_error: _Optional[str] = ..., last_error_ns: _Optional[int] = ..., restarts: _Optional[int] = ...) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    def __init__(self, nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ...) -> None: ...

class StartCaptureRequest(_message.Message):
    __slots__ = ("nodes", "filter", "max_seconds", "max_packets", "trace_id", "url")
    NODES_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    MAX_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_PACKETS_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedScalarFieldContainer[str]
    filter: str
    max_seconds: int
    max_packets: int
    trace_id: str
    url: str
    def __init__(self, nodes: _Optional[_Iterable[str]] = ..., filter: _Optional[str] = ..., max_seconds: _Optional[int] = ..., max_packets: _Optional[int] = ..., trace_id: _Optional[str] = ..., url: _Optional[str] = ...) -> None: ...

class Capture(_message.Message):
    __slots__ = ("id", "nodes", "filter", "state", "started_ns", "stopped_ns", "records", "trace_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STARTED_NS_FIELD_NUMBER: _ClassVar[int]
    STOPPED_NS_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    nodes: _containers.RepeatedScalarFieldContainer[str]
    filter: str
    state: str
    started_ns: int
    stopped_ns: int
    records: int
    trace_id: str
    def __init__(self, id: _Optional[str] = ..., nodes: _Optional[_Iterable[str]] = ..., filter: _Optional[str] = ..., state: _Optional[str] = ..., started_ns: _Optional[int] = ..., stopped_ns: _Optional[int] = ..., records: _Optional[int] = ..., trace_id: _Optional[str] = ...) -> None: ...

class StopCaptureRequest(_message.Message):
    __slots__ = ("id", "status", "drops", "kernel_view", "accepts", "binds", "tls_keylog")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DROPS_FIELD_NUMBER: _ClassVar[int]
    KERNEL_VIEW_FIELD_NUMBER: _ClassVar[int]
    ACCEPTS_FIELD_NUMBER: _ClassVar[int]
    BINDS_FIELD_NUMBER: _ClassVar[int]
    TLS_KEYLOG_FIELD_NUMBER: _ClassVar[int]
    id: str
    status: int
    drops: _containers.RepeatedCompositeFieldContainer[KernelDrop]
    kernel_view: str
    accepts: _containers.RepeatedCompositeFieldContainer[KernelAccept]
    binds: _containers.RepeatedCompositeFieldContainer[KernelBind]
    tls_keylog: str
    def __init__(self, id: _Optional[str] = ..., status: _Optional[int] = ..., drops: _Optional[_Iterable[_Union[KernelDrop, _Mapping]]] = ..., kernel_view: _Optional[str] = ..., accepts: _Optional[_Iterable[_Union[KernelAccept, _Mapping]]] = ..., binds: _Optional[_Iterable[_Union[KernelBind, _Mapping]]] = ..., tls_keylog: _Optional[str] = ...) -> None: ...

class KernelDrop(_message.Message):
    __slots__ = ("ts_ns", "node", "iface", "src", "dst", "proto", "reason", "location", "words")
    TS_NS_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    IFACE_FIELD_NUMBER: _ClassVar[int]
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    PROTO_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    ts_ns: int
    node: str
    iface: str
    src: str
    dst: str
    proto: str
    reason: str
    location: str
    words: str
    def __init__(self, ts_ns: _Optional[int] = ..., node: _Optional[str] = ..., iface: _Optional[str] = ..., src: _Optional[str] = ..., dst: _Optional[str] = ..., proto: _Optional[str] = ..., reason: _Optional[str] = ..., location: _Optional[str] = ..., words: _Optional[str] = ...) -> None: ...

class KernelAccept(_message.Message):
    __slots__ = ("ts_ns", "node", "pid", "host_pid", "tid", "process", "local", "remote", "listener", "backlog", "accept_queue")
    TS_NS_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    HOST_PID_FIELD_NUMBER: _ClassVar[int]
    TID_FIELD_NUMBER: _ClassVar[int]
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    LOCAL_FIELD_NUMBER: _ClassVar[int]
    REMOTE_FIELD_NUMBER: _ClassVar[int]
    LISTENER_FIELD_NUMBER: _ClassVar[int]
    BACKLOG_FIELD_NUMBER: _ClassVar[int]
    ACCEPT_QUEUE_FIELD_NUMBER: _ClassVar[int]
    ts_ns: int
    node: str
    pid: int
    host_pid: int
    tid: int
    process: str
    local: str
    remote: str
    listener: str
    backlog: int
    accept_queue: int
    def __init__(self, ts_ns: _Optional[int] = ..., node: _Optional[str] = ..., pid: _Optional[int] = ..., host_pid: _Optional[int] = ..., tid: _Optional[int] = ..., process: _Optional[str] = ..., local: _Optional[str] = ..., remote: _Optional[str] = ..., listener: _Optional[str] = ..., backlog: _Optional[int] = ..., accept_queue: _Optional[int] = ...) -> None: ...

class KernelBind(_message.Message):
    __slots__ = ("ts_ns", "node", "pid", "host_pid", "process", "address", "proto", "error", "words")
    TS_NS_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    HOST_PID_FIELD_NUMBER: _ClassVar[int]
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PROTO_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    ts_ns: int
    node: str
    pid: int
    host_pid: int
    process: str
    address: str
    proto: str
    error: str
    words: str
    def __init__(self, ts_ns: _Optional[int] = ..., node: _Optional[str] = ..., pid: _Optional[int] = ..., host_pid: _Optional[int] = ..., process: _Optional[str] = ..., address: _Optional[str] = ..., proto: _Optional[str] = ..., error: _Optional[str] = ..., words: _Optional[str] = ...) -> None: ...

class StreamRecordsRequest(_message.Message):
    __slots__ = ("capture_id", "raw")
    CAPTURE_ID_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    capture_id: str
    raw: bool
    def __init__(self, capture_id: _Optional[str] = ..., raw: _Optional[bool] = ...) -> None: ...

class Record(_message.Message):
    __slots__ = ("capture_id", "node", "iface", "direction", "ts_ns", "proto", "src", "dst", "summary", "tcp_flags", "tcp_seq", "ip_id", "payload_hash", "keys", "frame", "length", "masked")
    class KeysEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CAPTURE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    IFACE_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    TS_NS_FIELD_NUMBER: _ClassVar[int]
    PROTO_FIELD_NUMBER: _ClassVar[int]
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    TCP_FLAGS_FIELD_NUMBER: _ClassVar[int]
    TCP_SEQ_FIELD_NUMBER: _ClassVar[int]
    IP_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_HASH_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    MASKED_FIELD_NUMBER: _ClassVar[int]
    capture_id: str
    node: str
    iface: str
    direction: str
    ts_ns: int
    proto: str
    src: str
    dst: str
    summary: str
    tcp_flags: str
    tcp_seq: int
    ip_id: int
    payload_hash: str
    keys: _containers.ScalarMap[str, str]
    frame: bytes
    length: int
    masked: bool
    def __init__(self, capture_id: _Optional[str] = ..., node: _Optional[str] = ..., iface: _Optional[str] = ..., direction: _Optional[str] = ..., ts_ns: _Optional[int] = ..., proto: _Optional[str] = ..., src: _Optional[str] = ..., dst: _Optional[str] = ..., summary: _Optional[str] = ..., tcp_flags: _Optional[str] = ..., tcp_seq: _Optional[int] = ..., ip_id: _Optional[int] = ..., payload_hash: _Optional[str] = ..., keys: _Optional[_Mapping[str, str]] = ..., frame: _Optional[bytes] = ..., length: _Optional[int] = ..., masked: _Optional[bool] = ...) -> None: ...

class Tuple(_message.Message):
    __slots__ = ("src", "dst", "proto")
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    PROTO_FIELD_NUMBER: _ClassVar[int]
    src: str
    dst: str
    proto: str
    def __init__(self, src: _Optional[str] = ..., dst: _Optional[str] = ..., proto: _Optional[str] = ...) -> None: ...

class Translation(_message.Message):
    __slots__ = ("before", "after")
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    before: Tuple
    after: Tuple
    def __init__(self, before: _Optional[_Union[Tuple, _Mapping]] = ..., after: _Optional[_Union[Tuple, _Mapping]] = ...) -> None: ...

class Layers(_message.Message):
    __slots__ = ("eth_src", "eth_dst", "ttl", "ip_id")
    ETH_SRC_FIELD_NUMBER: _ClassVar[int]
    ETH_DST_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    IP_ID_FIELD_NUMBER: _ClassVar[int]
    eth_src: str
    eth_dst: str
    ttl: int
    ip_id: int
    def __init__(self, eth_src: _Optional[str] = ..., eth_dst: _Optional[str] = ..., ttl: _Optional[int] = ..., ip_id: _Optional[int] = ...) -> None: ...

class Forwarding(_message.Message):
    __slots__ = ("iface", "eth_src", "eth_dst", "ttl")
    IFACE_FIELD_NUMBER: _ClassVar[int]
    ETH_SRC_FIELD_NUMBER: _ClassVar[int]
    ETH_DST_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    iface: str
    eth_src: str
    eth_dst: str
    ttl: int
    def __init__(self, iface: _Optional[str] = ..., eth_src: _Optional[str] = ..., eth_dst: _Optional[str] = ..., ttl: _Optional[int] = ...) -> None: ...

class Accepted(_message.Message):
    __slots__ = ("listener", "backlog", "accept_queue", "syn_queue", "pid", "process", "status", "listeners", "listen_overflows", "source", "tid", "accepted_ns")
    LISTENER_FIELD_NUMBER: _ClassVar[int]
    BACKLOG_FIELD_NUMBER: _ClassVar[int]
    ACCEPT_QUEUE_FIELD_NUMBER: _ClassVar[int]
    SYN_QUEUE_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LISTENERS_FIELD_NUMBER: _ClassVar[int]
    LISTEN_OVERFLOWS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TID_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_NS_FIELD_NUMBER: _ClassVar[int]
    listener: str
    backlog: int
    accept_queue: int
    syn_queue: int
    pid: int
    process: str
    status: str
    listeners: str
    listen_overflows: int
    source: str
    tid: int
    accepted_ns: int
    def __init__(self, listener: _Optional[str] = ..., backlog: _Optional[int] = ..., accept_queue: _Optional[int] = ..., syn_queue: _Optional[int] = ..., pid: _Optional[int] = ..., process: _Optional[str] = ..., status: _Optional[str] = ..., listeners: _Optional[str] = ..., listen_overflows: _Optional[int] = ..., source: _Optional[str] = ..., tid: _Optional[int] = ..., accepted_ns: _Optional[int] = ...) -> None: ...

class Hop(_message.Message):
    __slots__ = ("record", "translated", "layers", "forwarded", "accepted", "refused", "decrypted")
    RECORD_FIELD_NUMBER: _ClassVar[int]
    TRANSLATED_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    FORWARDED_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    DECRYPTED_FIELD_NUMBER: _ClassVar[int]
    record: Record
    translated: Translation
    layers: Layers
    forwarded: Forwarding
    accepted: Accepted
    refused: str
    decrypted: Decrypted
    def __init__(self, record: _Optional[_Union[Record, _Mapping]] = ..., translated: _Optional[_Union[Translation, _Mapping]] = ..., layers: _Optional[_Union[Layers, _Mapping]] = ..., forwarded: _Optional[_Union[Forwarding, _Mapping]] = ..., accepted: _Optional[_Union[Accepted, _Mapping]] = ..., refused: _Optional[str] = ..., decrypted: _Optional[_Union[Decrypted, _Mapping]] = ...) -> None: ...

class Decrypted(_message.Message):
    __slots__ = ("summary", "keys", "cipher")
    class KeysEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    CIPHER_FIELD_NUMBER: _ClassVar[int]
    summary: str
    keys: _containers.ScalarMap[str, str]
    cipher: str
    def __init__(self, summary: _Optional[str] = ..., keys: _Optional[_Mapping[str, str]] = ..., cipher: _Optional[str] = ...) -> None: ...

class Stage(_message.Message):
    __slots__ = ("name", "start_ns", "end_ns", "first_hop", "last_hop", "hops", "note")
    NAME_FIELD_NUMBER: _ClassVar[int]
    START_NS_FIELD_NUMBER: _ClassVar[int]
    END_NS_FIELD_NUMBER: _ClassVar[int]
    FIRST_HOP_FIELD_NUMBER: _ClassVar[int]
    LAST_HOP_FIELD_NUMBER: _ClassVar[int]
    HOPS_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    name: str
    start_ns: int
    end_ns: int
    first_hop: int
    last_hop: int
    hops: int
    note: str
    def __init__(self, name: _Optional[str] = ..., start_ns: _Optional[int] = ..., end_ns: _Optional[int] = ..., first_hop: _Optional[int] = ..., last_hop: _Optional[int] = ..., hops: _Optional[int] = ..., note: _Optional[str] = ...) -> None: ...

class Gap(_message.Message):
    __slots__ = ("node", "reason")
    NODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    node: str
    reason: str
    def __init__(self, node: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class Trace(_message.Message):
    __slots__ = ("trace_id", "url", "status", "hops", "capture_id", "stages", "gaps", "kernel_view", "tls_keylog", "raw", "masked_frames")
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    HOPS_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_ID_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    GAPS_FIELD_NUMBER: _ClassVar[int]
    KERNEL_VIEW_FIELD_NUMBER: _ClassVar[int]
    TLS_KEYLOG_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    MASKED_FRAMES_FIELD_NUMBER: _ClassVar[int]
    trace_id: str
    url: str
    status: int
    hops: _containers.RepeatedCompositeFieldContainer[Hop]
    capture_id: str
    stages: _containers.RepeatedCompositeFieldContainer[Stage]
    gaps: _containers.RepeatedCompositeFieldContainer[Gap]
    kernel_view: str
    tls_keylog: str
    raw: bool
    masked_frames: int
    def __init__(self, trace_id: _Optional[str] = ..., url: _Optional[str] = ..., status: _Optional[int] = ..., hops: _Optional[_Iterable[_Union[Hop, _Mapping]]] = ..., capture_id: _Optional[str] = ..., stages: _Optional[_Iterable[_Union[Stage, _Mapping]]] = ..., gaps: _Optional[_Iterable[_Union[Gap, _Mapping]]] = ..., kernel_view: _Optional[str] = ..., tls_keylog: _Optional[str] = ..., raw: _Optional[bool] = ..., masked_frames: _Optional[int] = ...) -> None: ...

class GetTraceRequest(_message.Message):
    __slots__ = ("trace_id", "capture_id", "start_ns", "end_ns", "tls_keylog", "raw")
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_ID_FIELD_NUMBER: _ClassVar[int]
    START_NS_FIELD_NUMBER: _ClassVar[int]
    END_NS_FIELD_NUMBER: _ClassVar[int]
    TLS_KEYLOG_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    trace_id: str
    capture_id: str
    start_ns: int
    end_ns: int
    tls_keylog: str
    raw: bool
    def __init__(self, trace_id: _Optional[str] = ..., capture_id: _Optional[str] = ..., start_ns: _Optional[int] = ..., end_ns: _Optional[int] = ..., tls_keylog: _Optional[str] = ..., raw: _Optional[bool] = ...) -> None: ...

class TraceSummary(_message.Message):
    __slots__ = ("trace_id", "url", "status", "started_ns", "hops")
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STARTED_NS_FIELD_NUMBER: _ClassVar[int]
    HOPS_FIELD_NUMBER: _ClassVar[int]
    trace_id: str
    url: str
    status: int
    started_ns: int
    hops: int
    def __init__(self, trace_id: _Optional[str] = ..., url: _Optional[str] = ..., status: _Optional[int] = ..., started_ns: _Optional[int] = ..., hops: _Optional[int] = ...) -> None: ...

class ListTracesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTracesResponse(_message.Message):
    __slots__ = ("traces",)
    TRACES_FIELD_NUMBER: _ClassVar[int]
    traces: _containers.RepeatedCompositeFieldContainer[TraceSummary]
    def __init__(self, traces: _Optional[_Iterable[_Union[TraceSummary, _Mapping]]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("node", "service", "interfaces")
    NODE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    INTERFACES_FIELD_NUMBER: _ClassVar[int]
    node: str
    service: str
    interfaces: _containers.RepeatedCompositeFieldContainer[Interface]
    def __init__(self, node: _Optional[str] = ..., service: _Optional[str] = ..., interfaces: _Optional[_Iterable[_Union[Interface, _Mapping]]] = ...) -> None: ...

class RecordBatch(_message.Message):
    __slots__ = ("capture_id", "interfaces", "blocks", "block_packets", "block_interface")
    CAPTURE_ID_FIELD_NUMBER: _ClassVar[int]
    INTERFACES_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    BLOCK_PACKETS_FIELD_NUMBER: _ClassVar[int]
    BLOCK_INTERFACE_FIELD_NUMBER: _ClassVar[int]
    capture_id: str
    interfaces: _containers.RepeatedScalarFieldContainer[str]
    blocks: _containers.RepeatedScalarFieldContainer[bytes]
    block_packets: _containers.RepeatedScalarFieldContainer[int]
    block_interface: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, capture_id: _Optional[str] = ..., interfaces: _Optional[_Iterable[str]] = ..., blocks: _Optional[_Iterable[bytes]] = ..., block_packets: _Optional[_Iterable[int]] = ..., block_interface: _Optional[_Iterable[int]] = ...) -> None: ...

class AgentMessage(_message.Message):
    __slots__ = ("hello", "batch", "ended", "armed", "error")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    ENDED_FIELD_NUMBER: _ClassVar[int]
    ARMED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    batch: RecordBatch
    ended: CaptureEnded
    armed: CaptureArmed
    error: AgentError
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., batch: _Optional[_Union[RecordBatch, _Mapping]] = ..., ended: _Optional[_Union[CaptureEnded, _Mapping]] = ..., armed: _Optional[_Union[CaptureArmed, _Mapping]] = ..., error: _Optional[_Union[AgentError, _Mapping]] = ...) -> None: ...

class AgentError(_message.Message):
    __slots__ = ("message", "ts_ns", "restarts")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TS_NS_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    message: str
    ts_ns: int
    restarts: int
    def __init__(self, message: _Optional[str] = ..., ts_ns: _Optional[int] = ..., restarts: _Optional[int] = ...) -> None: ...

class CaptureArmed(_message.Message):
    __slots__ = ("capture_id",)
    CAPTURE_ID_FIELD_NUMBER: _ClassVar[int]
    capture_id: str
    def __init__(self, capture_id: _Optional[str] = ...) -> None: ...

class CaptureEnded(_message.Message):
    __slots__ = ("capture_id", "records", "error", "translations", "logs", "kernel_drops", "hit_packet_bound", "sockets")
    CAPTURE_ID_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TRANSLATIONS_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    KERNEL_DROPS_FIELD_NUMBER: _ClassVar[int]
    HIT_PACKET_BOUND_FIELD_NUMBER: _ClassVar[int]
    SOCKETS_FIELD_NUMBER: _ClassVar[int]
    capture_id: str
    records: int
    error: str
    translations: _containers.RepeatedCompositeFieldContainer[Translation]
    logs: _containers.RepeatedCompositeFieldContainer[LogLine]
    kernel_drops: int
    hit_packet_bound: bool
    sockets: str
    def __init__(self, capture_id: _Optional[str] = ..., records: _Optional[int] = ..., error: _Optional[str] = ..., translations: _Optional[_Iterable[_Union[Translation, _Mapping]]] = ..., logs: _Optional[_Iterable[_Union[LogLine, _Mapping]]] = ..., kernel_drops: _Optional[int] = ..., hit_packet_bound: _Optional[bool] = ..., sockets: _Optional[str] = ...) -> None: ...

class LogLine(_message.Message):
    __slots__ = ("src", "dst", "traceparent", "text")
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    src: str
    dst: str
    traceparent: str
    text: str
    def __init__(self, src: _Optional[str] = ..., dst: _Optional[str] = ..., traceparent: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class StartCommand(_message.Message):
    __slots__ = ("capture_id", "filter", "max_seconds", "max_packets", "arrivals_only")
    CAPTURE_ID_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    MAX_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_PACKETS_FIELD_NUMBER: _ClassVar[int]
    ARRIVALS_ONLY_FIELD_NUMBER: _ClassVar[int]
    capture_id: str
    filter: str
    max_seconds: int
    max_packets: int
    arrivals_only: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, capture_id: _Optional[str] = ..., filter: _Optional[str] = ..., max_seconds: _Optional[int] = ..., max_packets: _Optional[int] = ..., arrivals_only: _Optional[_Iterable[str]] = ...) -> None: ...

class StopCommand(_message.Message):
    __slots__ = ("capture_id",)
    CAPTURE_ID_FIELD_NUMBER: _ClassVar[int]
    capture_id: str
    def __init__(self, capture_id: _Optional[str] = ...) -> None: ...

class AgentCommand(_message.Message):
    __slots__ = ("start", "stop")
    START_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    start: StartCommand
    stop: StopCommand
    def __init__(self, start: _Optional[_Union[StartCommand, _Mapping]] = ..., stop: _Optional[_Union[StopCommand, _Mapping]] = ...) -> None: ...
