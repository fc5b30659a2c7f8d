"""Rollout target for a local endpoint (``endpoints local up``): the router's rules, the serving processes' metrics.

Weights are applied the way ``endpoints local update`` applies them: the router's config file (``routes.json``)
is rewritten atomically and the router re-reads it on ``SIGHUP``, with no restart and no request lost. Metrics
come from each deployment's ``GET /metrics`` (scoring requests by status, latency histogram). The result is
written to the endpoint file with a round-trip YAML edit (comments and key order kept).
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Mapping
from pathlib import Path

import httpx
from ruamel.yaml.comments import CommentedMap

from endpoints.app.promote import dump, round_trip_yaml
from endpoints.errors import SpecError
from endpoints.local.router_config import RouterConfig
from endpoints.local.routing import RoutingTable
from endpoints.local.state import EndpointState, StateDir, write_private
from endpoints.rollout.plan import RolloutError
from endpoints.rollout.window import Snapshot, parse_metrics

SCRAPE_TIMEOUT_S = 2.0


class LocalTarget:
    """A running local endpoint.

    Args:
        dir_: Its state folder.
        state: Its saved state (router and deployment processes, project folder).

    Raises:
        RolloutError: the router is not running.
    """

    def __init__(self, dir_: StateDir, state: EndpointState) -> None:
        self.dir = dir_
        self.state = state
        if state.router is None or not state.router.alive():
            raise RolloutError(
                f"endpoint {state.endpoint}: its router is not running; start it with `endpoints local up`"
            )
        self.router = state.router
        self.config = RouterConfig.load(dir_.routes_file)
        self.endpoint_file = Path(state.project_dir) / state.endpoint_file
        self._http = httpx.Client(timeout=SCRAPE_TIMEOUT_S, trust_env=False)

    @classmethod
    def open(cls, project_dir: Path, endpoint_name: str, root: Path) -> LocalTarget:
        """The running endpoint ``endpoint_name`` started from ``project_dir``.

        Raises:
            RolloutError: not started here, or started from another folder.
        """
        dir_ = StateDir(root, endpoint_name)
        state = dir_.load()
        if state is None:
            raise RolloutError(
                f"endpoint {endpoint_name} is not running here ({root}); start it with `endpoints local up`"
            )
        if Path(state.project_dir) != project_dir.resolve():
            raise RolloutError(f"endpoint {endpoint_name} runs from {state.project_dir}, not {project_dir.resolve()}")
        return cls(dir_, state)

    @property
    def deployments(self) -> tuple[str, ...]:
        """Deployments the router knows."""
        return self.config.table.deployments

    @property
    def traffic(self) -> dict[str, int]:
        """Live traffic the router applies now."""
        return dict(self.config.table.traffic)

    @property
    def mirror(self) -> dict[str, int]:
        """Mirror share the router applies now."""
        return dict(self.config.table.mirror_traffic)

    def apply(self, traffic: Mapping[str, int], mirror: Mapping[str, int]) -> None:
        """Rewrite the router's config and signal it (``SIGHUP``); keep ``state.json`` in step for ``local status``."""
        table = RoutingTable(
            endpoint=self.config.table.endpoint,
            deployments=self.config.table.deployments,
            traffic=dict(traffic),
            mirror_traffic={k: v for k, v in mirror.items() if v > 0},
        )
        self.config = RouterConfig(table, self.config.upstreams, self.config.timeouts_s, self.config.max_body_bytes)
        write_private(self.dir.routes_file, json.dumps(self.config.to_dict(), indent=2) + "\n")
        if not self.router.alive():
            raise RolloutError(f"endpoint {self.state.endpoint}: the router (pid {self.router.pid}) is gone")
        os.kill(self.router.pid, signal.SIGHUP)
        state = self.dir.load() or self.state
        state.traffic = dict(table.traffic)
        state.mirror_traffic = dict(table.mirror_traffic)
        self.dir.save(state)

    def snapshot(self) -> dict[str, Snapshot]:
        """Each deployment's scoring counts from its ``/metrics``; unreachable ones are marked so."""
        out: dict[str, Snapshot] = {}
        for name, url in self.config.upstreams.items():
            record = self.state.deployments.get(name)
            if record is None or not record.alive():
                out[name] = Snapshot(reachable=False)
                continue
            try:
                response = self._http.get(f"{url}/metrics")
                response.raise_for_status()
                out[name] = parse_metrics(response.text)
            except (httpx.HTTPError, ValueError):
                out[name] = Snapshot(reachable=False)
        return out

    def persist(self, traffic: Mapping[str, int], mirror: Mapping[str, int]) -> str:
        """Write ``traffic`` and ``mirror_traffic`` into the endpoint file (round trip: comments stay)."""
        path = self.endpoint_file
        try:
            yaml, data = round_trip_yaml(path.read_text(encoding="utf-8"), str(path))
        except (OSError, SpecError) as e:
            raise RolloutError(f"{path}: cannot write the final traffic: {e}") from e
        rules = data.get("traffic")
        if not isinstance(rules, CommentedMap):
            rules = data["traffic"] = CommentedMap()
        for name in self.deployments:
            rules[name] = int(traffic.get(name, 0))
        kept = {k: v for k, v in mirror.items() if v > 0}
        if kept:
            data["mirror_traffic"] = CommentedMap(kept)
        elif "mirror_traffic" in data:
            del data["mirror_traffic"]
        mode = path.stat().st_mode & 0o777
        write_private(path, dump(yaml, data))
        path.chmod(mode)  # an atomic rewrite, with the file's own permissions
        return f"{path}: traffic {dict(traffic)}" + (f", mirror_traffic {kept}" if kept else "")

    def close(self) -> None:
        """Close the scrape client."""
        self._http.close()
