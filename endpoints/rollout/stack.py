"""Rollout target for a Pulumi stack: weights applied with the Automation API, guard metrics read from Prometheus.

Each change of weights edits the stack file's overrides (``ml-endpoints:overrides.<endpoint>.traffic`` and
``.mirrorTraffic``, a round-trip edit as ``endpoints promote`` does), previews it with the project's policy pack
(a mandatory violation stops the rollout before anything changes) and runs ``up``. A rollback writes the stack file
back to its text before the rollout, byte for byte, and runs ``up``. A preview the policy pack refuses leaves the
stack file at the live weights, runs no ``up`` and ends the rollout with the violations as its reason.

Metrics are the serving processes' counters as the Prometheus Operator scrapes them through the stack's PodMonitor
(``components.builders.monitoring.pod_monitor``): ``endpoint`` and ``deployment`` from the pod labels, ``namespace``
from the pod's namespace (the operator's own relabelling), read as instant queries selecting all three, so a
same-named endpoint of another stack scraped by the same Prometheus is never counted.

tests/cluster/test_rollout_cluster.py runs this against the throwaway cluster, the real engine and a real Prometheus.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from components.builders.monitoring import guard_queries
from endpoints.app.promote import OVERRIDES_KEY, _child, _config, _current_split, dump, round_trip_yaml, stack_file
from endpoints.errors import SpecError
from endpoints.rollout.plan import RolloutError
from endpoints.rollout.window import Snapshot, _is_error

POLICY_PACK = "policies"
_POLICIES_HEADER = "Policies:"


def policy_violations(output: str, limit: int = 4000) -> str:
    """The mandatory violations in a failed preview's output, one line each (else its last lines), bounded.

    The engine prints them under ``Policies:``, per pack, as ``- [mandatory]  <policy>  (<type>: <name>)`` followed
    by the policy's description and the violation's message on lines of their own.
    """
    lines = output.splitlines()
    found: list[list[str]] = []
    in_policies = False
    for line in lines:
        text = line.strip()
        if text == _POLICIES_HEADER or text.endswith(" " + _POLICIES_HEADER):  # str(CommandError): " stdout: ..."
            in_policies = True
            continue
        if in_policies and (not line[:1].isspace() or not text):
            in_policies = False
        if not in_policies:
            continue
        if text.startswith("- ["):
            found.append([text[2:]] if text.startswith("- [mandatory]") else [])
        elif found and found[-1] and not text.startswith(("❌", "✅", "⚠")):
            found[-1].append(text)
    kept = [" ".join(" ".join(v).split()) for v in found if v]
    if kept:
        return "\n".join(kept)[:limit]
    return "\n".join(line for line in lines[-20:] if line.strip())[-limit:]


class StackTarget:
    """One endpoint of one stack.

    Args:
        repo_root: The Pulumi project folder (``Pulumi.yaml``, ``stacks/``).
        stack: Stack name.
        endpoint: Endpoint name.
        prometheus: Prometheus base URL.
    """

    def __init__(self, repo_root: Path, stack: str, endpoint: str, prometheus: str) -> None:
        self.repo_root = repo_root
        self.stack_name = stack
        self.endpoint = endpoint
        self.path = stack_file(repo_root, stack)
        self.original = self.path.read_text(encoding="utf-8")
        _, data = round_trip_yaml(self.original, str(self.path))
        override = (_config(data, str(self.path)).get(OVERRIDES_KEY) or {}).get(endpoint) or {}
        self.traffic, self.mirror = _current_split(repo_root, stack, endpoint, override)
        self.deployments = tuple(sorted(set(self.traffic) | set(self.mirror)))
        self._initial = (dict(self.traffic), dict(self.mirror))
        # What the last successful ``up`` made live (before the first apply: the stack as it was deployed);
        # ``None`` after a failed ``up``, whose outcome is unknown.
        self._live: tuple[dict[str, int], dict[str, int]] | None = self._initial
        self.namespace = _namespace(repo_root, stack)
        self._http = httpx.Client(base_url=prometheus, timeout=10.0, trust_env=False)
        self._stack: Any = None

    @classmethod
    def open(cls, repo_root: Path, stack: str, endpoint: str, prometheus: str, _bake_s: float) -> StackTarget:
        """The endpoint ``endpoint`` of stack ``stack``.

        Raises:
            RolloutError: no such stack file or endpoint.
        """
        try:
            return cls(repo_root, stack, endpoint, prometheus)
        except SpecError as e:
            raise RolloutError(str(e)) from e

    def _automation(self) -> Any:
        if self._stack is None:
            from pulumi import automation as auto  # only the stack path needs the engine

            self._stack = auto.select_stack(stack_name=self.stack_name, work_dir=str(self.repo_root))
        return self._stack

    def render(self, traffic: Mapping[str, int], mirror: Mapping[str, int]) -> str:
        """The stack file's text with these weights (the original text for the weights before the rollout)."""
        if (dict(traffic), {k: v for k, v in mirror.items() if v}) == (
            self._initial[0],
            {k: v for k, v in self._initial[1].items() if v},
        ):
            return self.original
        yaml, data = round_trip_yaml(self.original, str(self.path))
        ep = _child(_child(_config(data, str(self.path)), OVERRIDES_KEY), self.endpoint)
        rules = _child(ep, "traffic")
        for name in self.deployments:
            rules[name] = int(traffic.get(name, 0))
        kept = {k: int(v) for k, v in mirror.items() if v}
        if kept:
            ep["mirrorTraffic"] = kept
        elif "mirrorTraffic" in ep:
            del ep["mirrorTraffic"]
        return dump(yaml, data)

    def apply(self, traffic: Mapping[str, int], mirror: Mapping[str, int]) -> None:
        """Write the stack file, preview with the policy pack, then ``up``.

        Weights already live (a rollback before any ``up``) are only written back. A preview the pack refuses
        (a mandatory violation) writes the live weights back and runs no ``up``.

        Raises:
            RolloutError: the preview failed (the violations, or the engine's last lines, as the message).
        """
        wanted = (dict(traffic), {k: v for k, v in mirror.items() if v})
        text = self.render(traffic, mirror)
        self.path.write_text(text, encoding="utf-8")
        if self._live is not None and wanted == (self._live[0], {k: v for k, v in self._live[1].items() if v}):
            return
        from pulumi.automation import errors

        stack = self._automation()
        packs = [str(self.repo_root / POLICY_PACK)]
        try:
            stack.preview(policy_packs=packs, color="never")
        except errors.CommandError as e:
            if self._live is not None:
                self.path.write_text(self.render(*self._live), encoding="utf-8")
            raise RolloutError(
                f"stack {self.stack_name}: preview with the policy pack refused traffic {wanted[0]}"
                + (f", mirror {wanted[1]}" if wanted[1] else "")
                + f":\n{policy_violations(str(e))}"
            ) from e
        self._live = None
        stack.up(policy_packs=packs, color="never")
        self._live = wanted
        self.traffic, self.mirror = dict(traffic), dict(mirror)

    def _query(self, promql: str) -> list[dict[str, Any]]:
        response = self._http.get("/api/v1/query", params={"query": promql})
        response.raise_for_status()
        body = response.json()
        if body.get("status") != "success":
            raise RolloutError(f"prometheus: {promql}: {body.get('error')}")
        return list(body["data"]["result"])

    def snapshot(self) -> dict[str, Snapshot]:
        """Cumulative scoring counts per deployment from Prometheus; all unreachable when Prometheus is."""
        requests_query, buckets_query = guard_queries(self.endpoint, self.namespace)
        try:
            requests = self._query(requests_query)
            buckets = self._query(buckets_query)
        except (httpx.HTTPError, ValueError, KeyError):
            return {n: Snapshot(reachable=False) for n in self.deployments}
        counts: dict[str, list[float]] = {n: [0.0, 0.0] for n in self.deployments}
        hist: dict[str, dict[float, float]] = {n: {} for n in self.deployments}
        for row in requests:
            name = row["metric"].get("deployment", "")
            value = float(row["value"][1])
            entry = counts.setdefault(name, [0.0, 0.0])
            entry[0] += value
            if _is_error(row["metric"].get("status", "")):
                entry[1] += value
        for row in buckets:
            name = row["metric"].get("deployment", "")
            le = row["metric"].get("le", "+Inf")
            hist.setdefault(name, {})[math.inf if le == "+Inf" else float(le)] = float(row["value"][1])
        return {n: Snapshot(requests=c[0], errors=c[1], buckets=hist.get(n, {})) for n, c in counts.items()}

    def persist(self, traffic: Mapping[str, int], mirror: Mapping[str, int]) -> str:
        """The stack file already holds the last step's weights (each step was applied through it)."""
        return f"{self.path}: {OVERRIDES_KEY}.{self.endpoint}.traffic {dict(traffic)}"

    def close(self) -> None:
        """Close the Prometheus client."""
        self._http.close()


def _namespace(repo_root: Path, stack: str) -> str:
    """The stack's namespace (``ml-endpoints:namespace`` or its default), the pods' ``namespace`` label."""
    from components.builders.stack_config import load_stack_config, settings_from_config

    return settings_from_config(load_stack_config(repo_root, stack), f"stacks/Pulumi.{stack}.yaml").namespace
