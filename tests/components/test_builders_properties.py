"""Property tests: any valid endpoint/deployment names and traffic splits give schema-valid, consistent routes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from specs_factory import SETTINGS, deployment, endpoint

from components.builders.common import k8s_name
from components.builders.online import build_http_route, deployment_object_name
from components.k8s_schema import validate_object

# Azure's names (letter first, letters/digits/hyphens, 3..32) that also end with a letter or digit: a trailing
# hyphen is refused by the builders (test_trailing_hyphen_is_refused).
NAME = st.from_regex(r"[A-Za-z][A-Za-z0-9-]{1,30}[A-Za-z0-9]", fullmatch=True)


@st.composite
def endpoints_with_traffic(draw: st.DrawFn) -> tuple[str, list[str], dict[str, int], dict[str, int]]:
    ep = draw(NAME)
    names = draw(st.lists(NAME.map(str.lower), min_size=1, max_size=6, unique=True))
    live = draw(st.lists(st.sampled_from(names), min_size=0, max_size=len(names), unique=True))
    traffic: dict[str, int] = {}
    if live:
        cuts = sorted(draw(st.lists(st.integers(0, 100), min_size=len(live) - 1, max_size=len(live) - 1)))
        bounds = [0, *cuts, 100]
        traffic = {n: bounds[i + 1] - bounds[i] for i, n in enumerate(live)}
    idle = [n for n in names if traffic.get(n, 0) == 0]
    mirror = {draw(st.sampled_from(idle)): draw(st.integers(1, 50))} if idle and traffic and draw(st.booleans()) else {}
    return ep, names, traffic, mirror


@settings(max_examples=60, deadline=None)
@given(endpoints_with_traffic())
def test_route_is_valid_and_matches_the_split(case: tuple[str, list[str], dict[str, int], dict[str, int]]) -> None:
    ep_name, names, traffic, mirror = case
    ep = endpoint(ep_name, traffic=traffic, mirror_traffic=mirror)
    deps = [deployment(n, ep_name) for n in names]
    route = build_http_route(ep, deps, SETTINGS)
    assert validate_object(route) == []
    rules = route["spec"]["rules"]
    pinned = [r["matches"][0]["headers"][0]["value"] for r in rules if "headers" in r["matches"][0]]
    assert pinned == sorted(names)
    live = {n: w for n, w in traffic.items() if w > 0}
    defaults = [r for r in rules if "headers" not in r["matches"][0]]
    if not live:
        assert defaults == []
        return
    (default,) = defaults
    got = {b["name"]: b["weight"] for b in default["backendRefs"]}
    assert got == {deployment_object_name(ep_name, n): w for n, w in live.items()}
    assert sum(got.values()) == 100
    mirrors = [f["requestMirror"] for f in default.get("filters", [])]
    assert mirrors == [
        {
            "backendRef": {"group": "", "kind": "Service", "name": deployment_object_name(ep_name, n), "port": 80},
            "percent": p,
        }
        for n, p in mirror.items()
    ]


@settings(max_examples=200, deadline=None)
@given(NAME, NAME)
def test_object_names_are_dns_labels(ep: str, dep: str) -> None:
    name = k8s_name(ep, dep)
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": {"ports": [{"port": 80}]}}
    assert validate_object(obj) == []


def test_trailing_hyphen_is_refused() -> None:
    """The spec refuses it before any builder runs; a builder given one anyway (model_construct) refuses it too."""
    import pytest
    from pydantic import ValidationError

    from endpoints.errors import SpecError
    from endpoints.specs.online import OnlineEndpoint

    with pytest.raises(ValidationError, match="no hyphen last"):
        endpoint("cars-")
    bad = OnlineEndpoint.model_construct(**{**endpoint("cars").__dict__, "name": "cars-"})
    with pytest.raises(SpecError) as e:
        build_http_route(bad, [deployment("alice", "cars")], SETTINGS)
    assert str(e.value) == (
        "<spec>: endpoint name 'cars-': ends with a hyphen; on Kubernetes it becomes a label value and a DNS name,"
        " which must end with a letter or digit"
    )
