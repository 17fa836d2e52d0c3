"""Per-hop packet traces: decoding captured frames, assembling them into one trace per visit,
and rendering traces (table, JSON, HTML, pcapng)."""
