"""What the benchmarks share: a free loopback port, a process's CPU time, and wrk's report parsed.

The benchmark scripts put ``bench/`` on ``sys.path`` and import this module (they run as scripts, not a package).
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far, all its threads (``/proc/PID/stat``); 0.0 when gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk_ms(text: str) -> float:
    """A wrk latency (``850.00us``, ``3.21ms``, ``1.02s``, ``1.50m``) in milliseconds."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"wrk latency {text!r}")
    return float(match.group(1)) * _UNIT_MS[match.group(2)]


@dataclass
class WrkReport:
    """wrk's ``--latency`` report."""

    rps: float
    requests: int
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: str  # wrk's own words after "Socket errors:", or "" when there were none
    errors: int  # the socket errors added up


def parse_wrk(out: str) -> WrkReport:
    """Parse the standard output of ``wrk --latency``; ValueError naming what is missing."""

    def find(pattern: str, what: str) -> re.Match[str]:
        match = re.search(pattern, out, re.M)
        if match is None:
            raise ValueError(f"wrk output has no {what}:\n{out}")
        return match

    socket_errors = re.search(r"Socket errors: (.*)", out)
    counts = re.findall(r"\d+", socket_errors.group(1)) if socket_errors else []
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return WrkReport(
        rps=float(find(r"Requests/sec:\s+([\d.]+)", "Requests/sec").group(1)),
        requests=int(find(r"(\d+) requests in", "request count").group(1)),
        p50_ms=wrk_ms(find(r"^\s+50%\s+(\S+)", "50% latency").group(1)),
        p99_ms=wrk_ms(find(r"^\s+99%\s+(\S+)", "99% latency").group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=socket_errors.group(1).strip() if socket_errors else "",
        errors=sum(int(n) for n in counts),
    )
