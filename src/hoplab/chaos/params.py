"""Typed parameters of faults (and, through their faults, of drills and experiments). Every
value a user gives -- `--param KEY=VALUE`, an experiment file's `params:`, the web UI's form --
is checked here against its parameter's declared kind before anything is planned, journaled
or run, and comes out as a typed value (an int, a float, a normalised string). Planners then
pass values to commands as arguments (argv, or a script's positional parameters), never as
script text. A refusal names the parameter: `--param rate: ...` (exit 2).

The kinds, in one table (`KINDS`), are deliberately narrow: ASCII digits only, no signs, no
exponents, no whitespace, no leading '-' anywhere (so no value can be read as an option)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Callable

from hoplab.spec import Topology

MAX_VALUE_CHARS = 64


class FaultError(Exception):
    """A fault that cannot be planned: bad target or parameter (exit 2). `argument` names what
    was wrong as the CLI spells it (`FAULT`, `--target`, `--duration`, `--param NAME`)."""

    def __init__(self, message: str, argument: str = ""):
        super().__init__(message)
        self.argument = argument


class ParamError(FaultError):
    def __init__(self, name: str, reason: str):
        super().__init__(f"--param {name}: {reason}", f"--param {name}")
        self.param, self.reason = name, reason


@dataclass(frozen=True)
class Context:
    """What a parameter is checked against: the lab and the fault's target."""

    topology: Topology
    node: str
    iface: str | None


_DIGITS = re.compile(r"[0-9]{1,10}")
_DECIMAL = re.compile(r"[0-9]{1,6}(\.[0-9]{1,4})?")
_RATE = re.compile(r"(?P<n>[0-9]{1,7})(?P<unit>bit|kbit|mbit|gbit|bps|kbps|mbps)")
_RATE_BITS = {"bit": 1, "kbit": 1000, "mbit": 1000**2, "gbit": 1000**3, "bps": 8, "kbps": 8000, "mbps": 8 * 1000**2}
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")  # one DNS label, lower case
_NODE = re.compile(r"[a-z][a-z0-9]{0,9}")  # the spec's node-name pattern
_ROLE = re.compile(r"[a-z_][a-z0-9_]{0,62}")  # an unquoted PostgreSQL identifier


@dataclass(frozen=True)
class Param:
    """One declared parameter: its kind (a key of `KINDS`), its default, its bounds (numbers,
    inclusive) and, for names, an extra check against the lab (`Context`) that returns the
    reason a value is refused, or None."""

    kind: str
    default: object
    low: float | None = None
    high: float | None = None
    check: Callable[[Context, object], str | None] | None = None
    optional: bool = False  # "" means "let the planner pick" (an unused address)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown parameter kind {self.kind!r} (kinds: {', '.join(KINDS)})")

    def describe(self) -> str:
        text = KINDS[self.kind][0]
        if self.low is not None:
            text += f", {self.low:g}..{self.high:g}"
        return text + (", or empty for a default" if self.optional else "")


def _bounded(value, p: Param, unit: str = "") -> str | None:
    if p.low is not None and not p.low <= value <= p.high:
        return f"{value:g}{unit} is outside {p.low:g}..{p.high:g}{unit}"
    return None


def _integer(text: str, p: Param, ctx: Context):
    if not _DIGITS.fullmatch(text):
        raise ValueError("expected a whole number (digits only)")
    value = int(text)
    reason = _bounded(value, p)
    if reason:
        raise ValueError(reason)
    return value


def _decimal(text: str, p: Param, ctx: Context):
    if not _DECIMAL.fullmatch(text):
        raise ValueError("expected a number (digits, an optional '.' and decimals)")
    value = float(text)
    if p.kind == "percent" and value == 0:
        raise ValueError("0% would do nothing; expected more than 0")
    reason = _bounded(value, p)
    if reason:
        raise ValueError(reason)
    return value


def _rate(text: str, p: Param, ctx: Context):
    match = _RATE.fullmatch(text)
    if not match:
        raise ValueError("expected a rate like 64kbit or 1mbit (digits, then bit, kbit, mbit, gbit, bps, kbps or mbps)")
    bits = int(match["n"]) * _RATE_BITS[match["unit"]]
    if not p.low <= bits <= p.high:
        raise ValueError(f"{text} is outside {p.low / 1000:g}kbit..{p.high / 1000**3:g}gbit")
    return text


def _address(text: str, p: Param, ctx: Context):
    if text == "" and p.optional:
        return ""
    try:
        address = ipaddress.IPv4Address(text)
    except ValueError:
        raise ValueError("expected an IPv4 address (a.b.c.d)") from None
    topology = ctx.topology
    for name, net in topology.networks.items():
        if address in net.subnet:
            if address in (net.subnet.network_address, net.subnet.broadcast_address):
                raise ValueError(f"{address} is {name}'s network or broadcast address")
            if address == topology.bridge_address(name):
                raise ValueError(f"{address} is reserved for the host's bridge on {name}: a fault never points at "
                                 "the host")
            return str(address)
    raise ValueError(f"{address} is in none of the lab's networks "
                     f"({', '.join(str(n.subnet) for n in topology.networks.values())})")


def _pattern(pattern: re.Pattern, what: str):
    def parse(text: str, p: Param, ctx: Context):
        if not pattern.fullmatch(text):
            raise ValueError(f"expected {what}")
        return text
    return parse


def _node(text: str, p: Param, ctx: Context):
    if not _NODE.fullmatch(text) or text not in ctx.topology.nodes:
        raise ValueError(f"expected a node of the lab ({', '.join(ctx.topology.nodes)})")
    return text


# kind -> (what a value looks like, parser). A parser gets the raw text and returns the typed
# value or raises ValueError with the reason.
KINDS: dict[str, tuple[str, Callable]] = {
    "percent": ("a percentage", _decimal),
    "rate": ("a tc rate (64kbit, 1mbit)", _rate),
    "ms": ("milliseconds", _integer),
    "port": ("a TCP port", _integer),
    "mtu": ("an MTU in bytes", _integer),
    "seconds": ("seconds", _integer),
    "requests": ("a number of requests", _integer),
    "address": ("an IPv4 address in the lab", _address),
    "node": ("a node name", _node),
    "record": ("a name in the lab's zone", _pattern(_LABEL, "one DNS label (a-z, 0-9, '-')")),
    "role": ("a PostgreSQL role name", _pattern(_ROLE, "a role name (a-z, 0-9, '_', not starting with a digit)")),
}


def raw_text(name: str, value) -> str:
    """A value as the text the kinds parse: strings as given, numbers written out; anything
    else (booleans, lists, mappings, None) is refused."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ParamError(name, f"expected a single value, got {type(value).__name__} {value!r}")
    text = value if isinstance(value, str) else (str(value) if isinstance(value, int) else f"{value:g}")
    if len(text) > MAX_VALUE_CHARS:
        raise ParamError(name, f"longer than {MAX_VALUE_CHARS} characters")
    if any(not (c.isascii() and c.isprintable()) for c in text):
        raise ParamError(name, f"{text!r} contains control, non-ASCII or non-printable characters")
    if text.startswith("-"):
        raise ParamError(name, f"{text!r} starts with '-' (it would read as an option)")
    return text


def check_params(fault_name: str, declared: dict[str, Param], given: dict, ctx: Context) -> dict:
    """Every declared parameter as a typed value: the given one checked, else the default."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise FaultError(f"--param: {fault_name} takes {', '.join(declared) or 'no parameters'}, "
                         f"not {', '.join(unknown)}", "--param")
    values = {}
    for name, p in declared.items():
        text = raw_text(name, given[name] if name in given else p.default)
        try:
            value = KINDS[p.kind][1](text, p, ctx)
        except ValueError as exc:
            raise ParamError(name, f"{text!r}: {exc}") from None
        reason = p.check(ctx, value) if p.check and value != "" else None
        if reason:  # a default too: peer=lb makes no sense on lb
            raise ParamError(name, f"{text!r}: {reason}")
        values[name] = value
    return values
