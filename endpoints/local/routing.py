"""The routing decision of an online endpoint, pure: live traffic by weight, header pins, mirroring.

The same rules the cluster's HTTPRoute expresses (weighted ``backendRefs``, one header-match rule per
deployment, a ``RequestMirror`` filter with ``percent``). No I/O here, so the rules are unit-tested directly
and the local router (``endpoints.local.router``) only moves bytes.

Weights are applied with shuffled decks rather than independent coin flips: every round of 100 live
requests holds exactly ``weight`` requests per deployment and exactly ``percent`` mirrored ones, in random
order. Splits are therefore exact over every 100 requests instead of drifting by a binomial error (about
+/-1.3 percentage points at 500 requests for 90/10), while no client can predict where its request lands.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field

PIN_HEADER = "azureml-model-deployment"


@dataclass(frozen=True)
class RoutingTable:
    """What an endpoint routes to.

    Attributes:
        endpoint: Endpoint name (used in error messages).
        deployments: Every deployment that exists (pinnable even with weight 0).
        traffic: Live traffic weight per deployment, percent (sums to 0 or 100).
        mirror_traffic: Percent of live traffic copied to at most one deployment.
    """

    endpoint: str
    deployments: tuple[str, ...]
    traffic: Mapping[str, int] = field(default_factory=dict)
    mirror_traffic: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        known = set(self.deployments)
        for name_of, mapping in (("traffic", self.traffic), ("mirror_traffic", self.mirror_traffic)):
            for name, weight in mapping.items():
                if name not in known:
                    raise ValueError(f"{name_of}.{name}: no deployment named {name!r} (deployments: {self._names()})")
                if not 0 <= weight <= 100:
                    raise ValueError(f"{name_of}.{name}: got {weight}; weights are percentages 0-100")
        total = sum(self.traffic.values())
        if total not in (0, 100):
            raise ValueError(f"traffic: got {total}; live traffic must sum to 0 or 100")
        if len(self.mirror_traffic) > 1:
            raise ValueError(f"mirror_traffic: got {sorted(self.mirror_traffic)}; at most one mirror deployment")

    def _names(self) -> str:
        return ", ".join(sorted(self.deployments)) or "none"

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (the router's config file holds this)."""
        return {
            "endpoint": self.endpoint,
            "deployments": list(self.deployments),
            "traffic": dict(self.traffic),
            "mirror_traffic": dict(self.mirror_traffic),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> RoutingTable:
        """Inverse of ``to_dict``.

        Raises:
            ValueError: a rule above is broken, naming the field and the value.
        """
        return cls(
            endpoint=str(data["endpoint"]),
            deployments=tuple(data["deployments"]),  # type: ignore[arg-type]
            traffic=dict(data.get("traffic") or {}),  # type: ignore[call-overload]
            mirror_traffic=dict(data.get("mirror_traffic") or {}),  # type: ignore[call-overload]
        )


@dataclass(frozen=True)
class Decision:
    """Where one request goes.

    Attributes:
        target: Deployment that answers the client, or ``None`` when ``status`` is an error.
        mirror: Deployment that gets a background copy, or ``None``.
        pinned: Whether the client named the deployment with the pin header.
        status: 200 when routed; 404 when nothing can answer (``error`` says why).
        error: Message for the client when ``status`` is not 200.
    """

    target: str | None
    mirror: str | None = None
    pinned: bool = False
    status: int = 200
    error: str | None = None


class WeightedDeck:
    """Deals names in exact proportion to integer weights: each round of ``sum(weights)`` cards is shuffled.

    Args:
        weights: Cards per name per round; names with weight 0 are never dealt.
        rng: Shuffling source (default: a ``random.Random`` seeded from the OS).
    """

    def __init__(self, weights: Mapping[str | None, int], rng: random.Random | None = None) -> None:
        self._cards: list[str | None] = [name for name, w in weights.items() for _ in range(w)]
        self._rng = rng or random.Random()
        self._round: list[str | None] = []

    def __bool__(self) -> bool:
        return bool(self._cards)

    def deal(self) -> str | None:
        """Next card; ``None`` when the deck is empty (or the card is the ``None`` filler)."""
        if not self._cards:
            return None
        if not self._round:
            self._round = list(self._cards)
            self._rng.shuffle(self._round)
        return self._round.pop()


class Router:
    """Routing state of one endpoint: the table and its two decks.

    Args:
        table: The rules.
        rng: Shuffling source shared by both decks (default: seeded from the OS).
    """

    def __init__(self, table: RoutingTable, rng: random.Random | None = None) -> None:
        self.table = table
        rng = rng or random.Random()
        self._live = WeightedDeck({k: v for k, v in table.traffic.items() if v > 0}, rng)
        mirror: dict[str | None, int] = {}
        for name, percent in table.mirror_traffic.items():
            if percent > 0:
                mirror = {name: percent, None: 100 - percent}
        self._mirror = WeightedDeck(mirror, rng)
        # Decisions are immutable and few (live x mirror pairs): made once, not per request.
        self._routed: dict[tuple[str, str | None], Decision] = {}
        self._pinned: dict[str, Decision] = {}

    def decide(self, pin: str | None) -> Decision:
        """Route one request.

        Args:
            pin: Value of the ``azureml-model-deployment`` header, or ``None`` when absent/empty.

        Returns:
            A pinned request goes to that deployment and is never mirrored; otherwise a live deployment by
            weight, plus the mirror deployment for the mirrored share. 404 for an unknown pin or when no
            deployment has live traffic.
        """
        table = self.table
        if pin:
            if pin not in table.deployments:
                return Decision(
                    None,
                    status=404,
                    error=f"endpoint {table.endpoint!r} has no deployment named {pin!r}"
                    f" (deployments: {table._names()})",
                )
            decision = self._pinned.get(pin)
            if decision is None:
                decision = self._pinned[pin] = Decision(pin, pinned=True)
            return decision
        target = self._live.deal()
        if target is None:
            return Decision(
                None,
                status=404,
                error=f"endpoint {table.endpoint!r} has no deployment with live traffic; set traffic or pin a"
                f" deployment with the {PIN_HEADER} header",
            )
        mirror = self._mirror.deal()
        decision = self._routed.get((target, mirror))
        if decision is None:
            decision = self._routed[(target, mirror)] = Decision(target, mirror=mirror)
        return decision
