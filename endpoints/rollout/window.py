"""Guard metrics over a time window: snapshots of cumulative counters, differences, the judgement (pure)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from endpoints.rollout.plan import Guards

SCORE_ROUTE = "/score"
REQUESTS = "endpoints_requests"
LATENCY = "endpoints_request_duration_seconds"
MODEL_ERROR_STATUS = "424"


@dataclass(frozen=True)
class Snapshot:
    """Cumulative counts of one deployment's scoring requests at one moment (or the difference of two).

    Attributes:
        requests: Scoring requests answered.
        errors: Of those, failed: a 5xx status, or 424 (the scoring script raised; Azure's model error).
        buckets: Cumulative latency histogram: upper bound in seconds -> requests at or below it.
        reachable: Whether the deployment answered the scrape.
    """

    requests: float = 0.0
    errors: float = 0.0
    buckets: Mapping[float, float] = field(default_factory=dict)
    reachable: bool = True

    def __sub__(self, earlier: Snapshot) -> Snapshot:
        if not (self.reachable and earlier.reachable):
            return Snapshot(reachable=self.reachable and earlier.reachable)
        if self.requests < earlier.requests:  # counter reset: the process restarted, count from zero
            return self
        return Snapshot(
            requests=self.requests - earlier.requests,
            errors=self.errors - earlier.errors,
            buckets={le: n - earlier.buckets.get(le, 0.0) for le, n in self.buckets.items()},
        )

    def __add__(self, other: Snapshot) -> Snapshot:
        keys = set(self.buckets) | set(other.buckets)
        return Snapshot(
            requests=self.requests + other.requests,
            errors=self.errors + other.errors,
            buckets={le: self.buckets.get(le, 0.0) + other.buckets.get(le, 0.0) for le in keys},
            reachable=self.reachable and other.reachable,
        )

    @property
    def error_rate(self) -> float | None:
        """5xx share, ``None`` without requests."""
        return self.errors / self.requests if self.requests else None

    def quantile_ms(self, q: float = 0.99) -> float | None:
        """Latency quantile in ms, interpolated inside its bucket as PromQL's ``histogram_quantile`` does."""
        if not self.requests or not self.buckets:
            return None
        bounds = sorted(self.buckets)
        total = self.buckets.get(math.inf, self.requests)
        rank = q * total
        lower, below = 0.0, 0.0
        for le in bounds:
            count = self.buckets[le]
            if count >= rank:
                if math.isinf(le):
                    return lower * 1000  # beyond the largest finite bound: that bound, as PromQL answers
                inside = count - below
                fraction = (rank - below) / inside if inside else 1.0
                return (lower + (le - lower) * fraction) * 1000
            lower, below = le, count
        return lower * 1000

    def summary(self) -> dict[str, object]:
        """JSON-ready numbers for the timeline."""
        rate, p99 = self.error_rate, self.quantile_ms()
        return {
            "requests": int(self.requests),
            "errors": int(self.errors),
            "error_rate": None if rate is None else round(rate, 4),
            "p99_ms": None if p99 is None else round(p99, 1),
            "reachable": self.reachable,
        }


def _is_error(status: str) -> bool:
    """Server errors (5xx) and model errors (424: ``run()`` raised, Azure's status for a failed scoring script)."""
    return status.startswith("5") or status == MODEL_ERROR_STATUS


def parse_metrics(text: str) -> Snapshot:
    """The scoring requests of one serving process's ``/metrics`` exposition (all workers aggregated)."""
    requests = errors = 0.0
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == REQUESTS:
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels.get("route") == SCORE_ROUTE:
                    requests += sample.value
                    if _is_error(sample.labels.get("status", "")):
                        errors += sample.value
        elif family.name == LATENCY:
            for sample in family.samples:
                if sample.name.endswith("_bucket") and sample.labels.get("route") == SCORE_ROUTE:
                    le = float(sample.labels["le"])
                    buckets[le] = buckets.get(le, 0.0) + sample.value
    return Snapshot(requests=requests, errors=errors, buckets=buckets)


def combined(snapshots: Iterable[Snapshot]) -> Snapshot:
    """Sum of several deployments' windows (the champion may be several deployments)."""
    total = Snapshot()
    for snap in snapshots:
        total = total + snap
    return total


def judge(challenger: Snapshot, champion: Snapshot, guards: Guards, *, final: bool) -> str | None:
    """Why the challenger's window breaches a guard, or ``None`` when it does not (yet).

    Args:
        challenger: The challenger's window (this step, or its copies in the mirror phase).
        champion: The champions' window, the baseline of relative limits.
        guards: Thresholds.
        final: The bake is over: too few requests is then a failure rather than "not yet".
    """
    if not challenger.reachable:
        return "challenger is not reachable (its /metrics did not answer)"
    if challenger.requests < guards.min_requests:
        if final:
            return (
                f"challenger answered {int(challenger.requests)} requests during the bake, fewer than"
                f" --min-requests {guards.min_requests}: not enough traffic to judge it"
            )
        return None
    rate = challenger.error_rate or 0.0
    bound = guards.max_error_rate.bound(champion.error_rate if champion.requests else None)
    if bound is None:
        bound = guards.max_error_rate.value  # no champion traffic to compare with: the margin over zero errors
    if rate > bound:
        return (
            f"error rate {rate:.1%} ({int(challenger.errors)}/{int(challenger.requests)}) is above"
            f" --max-error-rate {guards.max_error_rate} = {bound:.1%}"
        )
    if guards.max_p99_ms is not None:
        p99 = challenger.quantile_ms() or 0.0
        p99_bound = guards.max_p99_ms.bound(champion.quantile_ms())
        if p99_bound is None:
            p99_bound = guards.max_p99_ms.value
        if p99 > p99_bound:
            return f"p99 latency {p99:.0f} ms is above --max-p99-ms {guards.max_p99_ms} = {p99_bound:.0f} ms"
    return None
