"""The pure routing decision: weights, pins, mirroring, table validation."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from endpoints.local.routing import Decision, Router, RoutingTable, WeightedDeck

DEPLOYMENTS = ("alice", "bob", "carol")


def _router(traffic, mirror=None, seed=1):
    return Router(RoutingTable("cars", DEPLOYMENTS, traffic, mirror or {}), random.Random(seed))


def test_weights_are_exact_over_every_round_of_100():
    router = _router({"alice": 90, "bob": 10})
    for _ in range(5):
        counts = Counter(router.decide(None).target for _ in range(100))
        assert counts == {"alice": 90, "bob": 10}


def test_order_within_a_round_is_shuffled():
    router = _router({"alice": 90, "bob": 10}, seed=3)
    targets = [router.decide(None).target for _ in range(100)]
    assert targets != sorted(targets) and targets != sorted(targets, reverse=True)


def test_zero_weight_never_dealt():
    router = _router({"alice": 100, "bob": 0})
    assert {router.decide(None).target for _ in range(300)} == {"alice"}


def test_pin_goes_to_named_deployment_even_with_zero_weight_and_is_never_mirrored():
    router = _router({"alice": 100}, {"bob": 50})
    decisions = [router.decide("carol") for _ in range(200)]
    assert set(decisions) == {Decision("carol", mirror=None, pinned=True)}


def test_unknown_pin_is_404_naming_it():
    decision = _router({"alice": 100}).decide("dave")
    assert decision == Decision(
        None, status=404, error="endpoint 'cars' has no deployment named 'dave' (deployments: alice, bob, carol)"
    )


def test_no_live_traffic_and_no_pin_is_404():
    decision = _router({}).decide(None)
    assert decision.status == 404
    assert decision.error == (
        "endpoint 'cars' has no deployment with live traffic; set traffic or pin a deployment with the"
        " azureml-model-deployment header"
    )


def test_mirror_share_is_exact_per_100_live_requests():
    router = _router({"alice": 100}, {"bob": 10})
    decisions = [router.decide(None) for _ in range(500)]
    assert Counter(d.mirror for d in decisions) == {"bob": 50, None: 450}
    assert {d.target for d in decisions} == {"alice"}


def test_zero_mirror_percent_mirrors_nothing():
    router = _router({"alice": 100}, {"bob": 0})
    assert {router.decide(None).mirror for _ in range(200)} == {None}


def test_empty_deck_deals_none():
    assert WeightedDeck({}).deal() is None
    assert not WeightedDeck({"a": 0})


@pytest.mark.parametrize(
    ("traffic", "mirror", "message"),
    [
        pytest.param({"alice": 90, "bob": 20}, {}, "traffic: got 110; live traffic must sum to 0 or 100", id="sum"),
        pytest.param(
            {"dave": 100}, {}, "traffic.dave: no deployment named 'dave' (deployments: alice, bob, carol)", id="unknown"
        ),
        pytest.param(
            {"alice": 100},
            {"bob": 10, "carol": 10},
            "mirror_traffic: got ['bob', 'carol']; at most one mirror deployment",
            id="two-mirrors",
        ),
        pytest.param({"alice": 101}, {}, "traffic.alice: got 101; weights are percentages 0-100", id="range"),
    ],
)
def test_table_rejects_broken_rules(traffic, mirror, message):
    with pytest.raises(ValueError) as info:
        RoutingTable("cars", DEPLOYMENTS, traffic, mirror)
    assert str(info.value) == message


def test_table_round_trips_through_dict():
    table = RoutingTable("cars", DEPLOYMENTS, {"alice": 90, "bob": 10}, {"carol": 5})
    assert RoutingTable.from_dict(table.to_dict()) == table
