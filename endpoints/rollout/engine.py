"""The rollout loop, the same for a local endpoint and a stack: phases, bakes, judgement, rollback, timeline."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from endpoints.rollout.plan import RolloutError, RolloutPlan
from endpoints.rollout.window import Snapshot, combined, judge


class Target(Protocol):
    """Where the endpoint runs: how weights are applied, metrics read and the result kept."""

    def apply(self, traffic: Mapping[str, int], mirror: Mapping[str, int]) -> None:
        """Make ``traffic`` and ``mirror`` the live rules now; ``RolloutError`` when the target refuses them."""

    def snapshot(self) -> dict[str, Snapshot]:
        """Cumulative counts per deployment now."""

    def persist(self, traffic: Mapping[str, int], mirror: Mapping[str, int]) -> str:
        """Write the final rules where the endpoint is declared; return what was written (for the report)."""


@dataclass
class Outcome:
    """How a rollout ended.

    Attributes:
        ok: The challenger reached 100 % and the result was written.
        reason: Why it was rolled back (``None`` when ``ok``).
        traffic: Live traffic in effect at the end.
        timeline: Events in order (JSON-ready).
        written: What ``persist`` reported (``None`` when rolled back).
    """

    ok: bool
    reason: str | None
    traffic: dict[str, int]
    timeline: list[dict[str, Any]] = field(default_factory=list)
    written: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``--json``)."""
        return {
            "ok": self.ok,
            "reason": self.reason,
            "traffic": self.traffic,
            "written": self.written,
            "timeline": self.timeline,
        }


class Rollout:
    """Runs one plan against one target.

    Args:
        plan: What to do.
        target: Where.
        on_event: Called with each timeline event as it happens (progress display).
        on_poll: Called at each poll with the phase and both windows (live numbers).
        clock: Monotonic seconds (tests of the loop may pass a fake one).
        sleep: Sleeps seconds.
    """

    def __init__(
        self,
        plan: RolloutPlan,
        target: Target,
        *,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        on_poll: Callable[[str, Snapshot, Snapshot, float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.plan = plan
        self.target = target
        self.on_event = on_event or (lambda _e: None)
        self.on_poll = on_poll or (lambda _p, _c, _b, _left: None)
        self.clock = clock
        self.sleep = sleep
        self.poll_s = max(0.1, min(1.0, plan.bake_s / 4))
        self.timeline: list[dict[str, Any]] = []
        self._t0 = clock()

    def _event(self, event: str, **fields: Any) -> None:
        entry = {
            "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "t_s": round(self.clock() - self._t0, 3),
            "event": event,
            **fields,
        }
        self.timeline.append(entry)
        self.on_event(entry)

    def run(self) -> Outcome:
        """Mirror phase (when asked), then each step; roll back at the first breach, on an error or Ctrl-C."""
        plan = self.plan
        previous, previous_mirror = dict(plan.previous), dict(plan.previous_mirror)
        step_mirror = {k: v for k, v in previous_mirror.items() if k != plan.challenger}
        self._t0 = self.clock()
        self._event("start", challenger=plan.challenger, champions=list(plan.champions), traffic=previous)
        baseline = self.target.snapshot()
        current = previous
        phase = "start"
        reason: str | None = None
        try:
            if plan.mirror_percent:
                phase = "mirror"
                mirror = {plan.challenger: plan.mirror_percent}
                self.target.apply(previous, mirror)
                self._event("mirror", traffic=previous, mirror=mirror)
                reason = self._bake(phase, baseline)
            for step in () if reason is not None else plan.remaining_steps():
                phase = f"step {step}%"
                current = plan.weights_at(step)
                self.target.apply(current, step_mirror)
                self._event("step", percent=step, traffic=current, mirror=step_mirror)
                reason = self._bake(phase, baseline)
                if reason is not None:
                    break
        except RolloutError as e:  # the target refused the step (a policy violation): a reason, not a crash
            self._event("refused", phase=phase, reason=str(e))
            reason = f"{phase}: {e}"
        except BaseException as e:  # an error or Ctrl-C mid-way must not leave a half-rolled-out endpoint
            why = "interrupted" if isinstance(e, KeyboardInterrupt) else f"{type(e).__name__}: {e}"
            self._rollback(why, previous, previous_mirror)
            raise
        if reason is not None:  # outside the try: a rollback that fails is the command's error, not a new reason
            return self._rollback(reason, previous, previous_mirror)
        written = self.target.persist(current, step_mirror)
        self._event("done", traffic=current, mirror=step_mirror, written=written)
        return Outcome(True, None, current, self.timeline, written)

    def _bake(self, phase: str, baseline: Mapping[str, Snapshot]) -> str | None:
        """Hold the current rules for the bake time; the first breach (checked each poll) ends it early."""
        plan = self.plan
        start = self.target.snapshot()
        deadline = self.clock() + plan.bake_s
        while True:
            left = deadline - self.clock()
            if left > 0:
                self.sleep(min(self.poll_s, left))
            now = self.target.snapshot()
            final = self.clock() >= deadline
            challenger = now.get(plan.challenger, Snapshot(reachable=False)) - start.get(plan.challenger, Snapshot())
            champion = combined(
                now.get(n, Snapshot(reachable=False)) - baseline.get(n, Snapshot()) for n in plan.champions
            )
            self.on_poll(phase, challenger, champion, max(0.0, deadline - self.clock()))
            reason = judge(challenger, champion, plan.guards, final=final)
            if reason is not None:
                self._event(
                    "breach", phase=phase, reason=reason, challenger=challenger.summary(), champion=champion.summary()
                )
                return f"{phase}: {reason}"
            if final:
                self._event("passed", phase=phase, challenger=challenger.summary(), champion=champion.summary())
                return None

    def _rollback(self, reason: str, traffic: dict[str, int], mirror: dict[str, int]) -> Outcome:
        self.target.apply(traffic, mirror)
        self._event("rollback", reason=reason, traffic=traffic, mirror=mirror)
        return Outcome(False, reason, traffic, self.timeline)
