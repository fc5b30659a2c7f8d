"""What a rollout does, decided before it starts (pure: no I/O): steps, weights per step, guard thresholds."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from endpoints.app.promote import _split_traffic  # the one rule for "give X n%, scale the rest"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class RolloutError(ValueError):
    """A rollout that cannot start: bad options or an endpoint that does not fit them."""


def parse_duration(text: str, option: str = "--bake") -> float:
    """``"2s"``, ``"500ms"``, ``"1.5m"``, ``"1h"`` or plain seconds -> seconds.

    Raises:
        RolloutError: not a duration, or not positive.
    """
    match = _DURATION.match(text)
    if match is None:
        raise RolloutError(f"{option}: got {text!r}; a duration like 30s, 500ms, 2m or 1h")
    seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    if seconds <= 0:
        raise RolloutError(f"{option}: got {text!r}; a duration must be positive")
    return seconds


def parse_steps(text: str) -> tuple[int, ...]:
    """``"10,25,50,100"`` -> ``(10, 25, 50, 100)``: increasing percentages ending at 100.

    Raises:
        RolloutError: a step is not an integer in 1-100, steps do not increase, or the last is not 100.
    """
    steps: list[int] = []
    for part in text.split(","):
        try:
            value = int(part.strip())
        except ValueError:
            raise RolloutError(f"--steps: got {part.strip()!r} in {text!r}; integers 1-100 like 10,25,50,100") from None
        if not 1 <= value <= 100:
            raise RolloutError(f"--steps: got {value} in {text!r}; each step is a percentage 1-100")
        if steps and value <= steps[-1]:
            raise RolloutError(f"--steps: got {value} after {steps[-1]} in {text!r}; steps must increase")
        steps.append(value)
    if steps[-1] != 100:
        raise RolloutError(f"--steps: got {text!r}; the last step must be 100 (the challenger takes all traffic)")
    return tuple(steps)


@dataclass(frozen=True)
class Limit:
    """One guard threshold: absolute, or relative to the champion (``+`` prefix: champion's value plus this).

    Attributes:
        value: The threshold, or the margin over the champion when ``relative``.
        relative: Whether ``value`` is added to the champion's value.
    """

    value: float
    relative: bool = False

    def bound(self, champion: float | None) -> float | None:
        """The threshold for this window; ``None`` when relative and the champion has no value yet."""
        if not self.relative:
            return self.value
        return None if champion is None else champion + self.value

    def __str__(self) -> str:
        return f"champion + {self.value:g}" if self.relative else f"{self.value:g}"


def parse_limit(text: str, option: str, *, fraction: bool = False) -> Limit:
    """``"0.05"`` (absolute), ``"+0.02"`` (champion's value plus 0.02); ``fraction`` also takes ``"5%"``.

    Raises:
        RolloutError: not a number, negative, or a fraction over 1.
    """
    raw = text.strip()
    relative = raw.startswith("+")
    body = raw[1:] if relative else raw
    percent = fraction and body.endswith("%")
    try:
        value = float(body[:-1] if percent else body)
    except ValueError:
        kind = "a fraction like 0.05 or 5%" if fraction else "milliseconds like 500"
        raise RolloutError(f"{option}: got {text!r}; {kind}, or with a + prefix a margin over the champion") from None
    if percent:
        value /= 100
    if value < 0 or (fraction and value > 1):
        raise RolloutError(f"{option}: got {text!r}; must be {'0-1 (0-100%)' if fraction else '>= 0'}")
    return Limit(value, relative)


@dataclass(frozen=True)
class Guards:
    """Guard metrics watched while a step bakes.

    Attributes:
        max_error_rate: Largest share of failed answers (5xx, and 424 model errors) the challenger may give.
        max_p99_ms: Largest 99th percentile latency of the challenger, in milliseconds (``None``: not watched).
        min_requests: Requests the challenger must have answered in a window before it is judged; a step whose
            bake ends with fewer fails (no evidence is not a pass).
    """

    max_error_rate: Limit = Limit(0.01)
    max_p99_ms: Limit | None = None
    min_requests: int = 10


@dataclass(frozen=True)
class RolloutPlan:
    """The whole rollout.

    Attributes:
        challenger: Deployment rolled out.
        previous: Live traffic before the rollout (what a rollback restores).
        previous_mirror: Mirror share before the rollout.
        steps: Challenger's share per step, increasing, ending at 100.
        bake_s: Seconds each step (and the mirror phase) is held.
        mirror_percent: Share of live traffic copied to the challenger in the mirror phase (0: no mirror phase).
        guards: Thresholds.
    """

    challenger: str
    previous: Mapping[str, int]
    previous_mirror: Mapping[str, int]
    steps: tuple[int, ...]
    bake_s: float
    mirror_percent: int = 0
    guards: Guards = Guards()

    @property
    def champions(self) -> tuple[str, ...]:
        """Deployments with live traffic before the rollout, other than the challenger."""
        return tuple(sorted(n for n, w in self.previous.items() if w > 0 and n != self.challenger))

    def weights_at(self, step: int) -> dict[str, int]:
        """Traffic with the challenger at ``step`` percent; the rest split among the others in their old ratio."""
        return _split_traffic(self.previous, self.challenger, step, "traffic")

    def remaining_steps(self) -> tuple[int, ...]:
        """Steps above the challenger's current share."""
        current = self.previous.get(self.challenger, 0)
        return tuple(s for s in self.steps if s > current)


def build_plan(
    challenger: str,
    deployments: Sequence[str],
    traffic: Mapping[str, int],
    mirror: Mapping[str, int],
    *,
    steps: tuple[int, ...],
    bake_s: float,
    mirror_percent: int = 0,
    guards: Guards | None = None,
    where: str = "endpoint",
) -> RolloutPlan:
    """Check the options against the endpoint and make the plan.

    Raises:
        RolloutError: unknown challenger, no champion with live traffic, a bad mirror share, nothing left to do.
    """
    if challenger not in deployments:
        raise RolloutError(
            f"{where}: no deployment named {challenger!r} (deployments: {', '.join(sorted(deployments))})"
        )
    if not 0 <= mirror_percent <= 100:
        raise RolloutError(f"--mirror: got {mirror_percent}; a percentage 0-100 (0 skips the mirror phase)")
    plan = RolloutPlan(
        challenger=challenger,
        previous={n: int(traffic.get(n, 0)) for n in deployments},
        previous_mirror=dict(mirror),
        steps=steps,
        bake_s=bake_s,
        mirror_percent=mirror_percent,
        guards=guards or Guards(),
    )
    if not plan.champions:
        raise RolloutError(
            f"{where}: traffic: got {dict(traffic)};"
            " a rollout needs another deployment with live traffic to fall back on"
        )
    if not plan.remaining_steps():
        raise RolloutError(
            f"{where}: traffic: {challenger} already has {traffic.get(challenger)}%; nothing to roll out"
        )
    return plan
