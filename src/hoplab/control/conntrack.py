"""A NAT router's conntrack table, read through `conntrack -L -o xml` (netlink, structured
output): every connection whose reply does not return to the address it came from was
translated, and the two tuples say how."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ElementTree

from hoplab import bounded
from hoplab.v1 import control_pb2 as pb

LIST_TIMEOUT_S = 10  # conntrack -L


def _endpoint(ip: str | None, port: str | None) -> str:
    return f"{ip}:{port}" if port else (ip or "")


def parse(xml: str) -> list[pb.Translation]:
    found = []
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return found
    for flow in root.iter("flow"):
        metas = {meta.get("direction"): meta for meta in flow.findall("meta")}
        original, reply = metas.get("original"), metas.get("reply")
        if original is None or reply is None or original.find("layer4") is None:
            continue

        def tuple_of(meta):
            l3, l4 = meta.find("layer3"), meta.find("layer4")
            return (l3.findtext("src"), l4.findtext("sport"), l3.findtext("dst"), l4.findtext("dport"),
                    l4.get("protoname", ""))

        o_src, o_sport, o_dst, o_dport, proto = tuple_of(original)
        r_src, r_sport, r_dst, r_dport, _ = tuple_of(reply)
        if (r_dst, r_dport) == (o_src, o_sport):
            continue  # not translated
        found.append(pb.Translation(
            before=pb.Tuple(src=_endpoint(o_src, o_sport), dst=_endpoint(o_dst, o_dport), proto=proto),
            after=pb.Tuple(src=_endpoint(r_dst, r_dport), dst=_endpoint(r_src, r_sport), proto=proto)))
    return found


def translations() -> list[pb.Translation]:
    if shutil.which("conntrack") is None:
        return []
    result = bounded.run(["conntrack", "-L", "-o", "xml"], capture_output=True, text=True, timeout=LIST_TIMEOUT_S)
    return parse(result.stdout) if result.returncode == 0 else []
