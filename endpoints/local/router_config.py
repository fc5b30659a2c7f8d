"""The local router's config file: the routing rules, each deployment's URL and timeout, the body limit.

The local supervisor writes it (``endpoints local up``/``update``); the router reads it at start and again on
``SIGHUP``. Its rules are ``endpoints.local.routing``'s, the one source of the traffic decision.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contract.serving import DEFAULT_MAX_BODY_BYTES
from endpoints.local.routing import RoutingTable

DEFAULT_TIMEOUT_S = 10.0


@dataclass
class RouterConfig:
    """Everything the router needs (the JSON file written by the local supervisor).

    Attributes:
        table: Routing rules.
        upstreams: Base URL per deployment (``http://127.0.0.1:PORT``).
        timeouts_s: Seconds to wait for a deployment's answer (default 10); it enforces its own
            ``request_timeout_ms`` first, so this only catches a hung process.
        max_body_bytes: Largest request body accepted (default 64 MiB, the serving layer's default).
    """

    table: RoutingTable
    upstreams: dict[str, str]
    timeouts_s: dict[str, float] = field(default_factory=dict)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "table": self.table.to_dict(),
            "upstreams": self.upstreams,
            "timeouts_s": self.timeouts_s,
            "max_body_bytes": self.max_body_bytes,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RouterConfig:
        """Inverse of ``to_dict``.

        Raises:
            ValueError: a routing rule is broken, or a deployment has no upstream URL.
        """
        table = RoutingTable.from_dict(data["table"])
        upstreams = {str(k): str(v) for k, v in data["upstreams"].items()}
        missing = sorted(set(table.deployments) - set(upstreams))
        if missing:
            raise ValueError(f"upstreams: no URL for deployment(s) {', '.join(missing)}")
        return cls(
            table=table,
            upstreams=upstreams,
            timeouts_s={str(k): float(v) for k, v in (data.get("timeouts_s") or {}).items()},
            max_body_bytes=int(data.get("max_body_bytes", DEFAULT_MAX_BODY_BYTES)),
        )

    @classmethod
    def load(cls, path: Path) -> RouterConfig:
        """Read a config file.

        Raises:
            ValueError: the file is not valid JSON or breaks a rule; the message names the file.
        """
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: {e}") from e
