"""`endpoints studio --stack` against the real Pulumi engine and the throwaway API server (marker ``cluster``).

A stack of its own (``studio``: staging's online endpoint in namespace ml-studio) is brought up once for the module,
the real studio process serves it over loopback, and the stack is destroyed at the end. Changes go as the page makes
them: a POST without ``confirm`` previews (nothing applied: the HTTPRoute and the stack file stay as they were), the
same POST with the preview's id applies; a confirm of another change, of an edited stack file or of an id never handed
out is refused with 409. The keys appear in no answer but the reveal, and never in the studio's output.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from cluster_helpers import Cluster, Project
from studio_stack import ENDPOINT, NAMESPACE, STACK, Served, start, write_stack_file

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def served(project: Project, cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    write_stack_file(project.root)
    project.pulumi("stack", "init", STACK, "--secrets-provider", "passphrase")
    try:
        project.pulumi("up", "--stack", STACK, "--yes", timeout=900)
        studio = start(project.root, project.env, tmp_path_factory.mktemp("studio") / "studio.log")
        try:
            yield studio
        finally:
            studio.stop()
    finally:
        project.pulumi("destroy", "--stack", STACK, "--yes", timeout=900)


@pytest.fixture(scope="module")
def kube(cluster: Cluster) -> Any:
    from kubernetes import config

    return config.new_client_from_config(str(cluster.kubeconfig))


def _route_weights(kube: Any) -> list[tuple[str, int]]:
    from kubernetes import client

    custom = client.CustomObjectsApi(kube)
    route = custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", NAMESPACE, "httproutes", ENDPOINT)
    [default] = [r for r in route["spec"]["rules"] if not any(m.get("headers") for m in r.get("matches", []))]
    return [(b["name"], b["weight"]) for b in default["backendRefs"]]


def _secret_keys(kube: Any) -> dict[str, str]:
    from kubernetes import client

    core = client.CoreV1Api(kube)
    secrets = core.list_namespaced_secret(NAMESPACE, label_selector=f"ml-endpoints.io/endpoint={ENDPOINT}")
    [secret] = [s for s in secrets.items if "primary" in (s.data or {})]
    return {k: base64.b64decode(v).decode() for k, v in secret.data.items() if k in ("primary", "secondary")}


def test_list_and_show_the_stack(served: Served) -> None:
    with served.client() as c:
        listed = c.get("/api/endpoints")
        shown = c.get(f"/api/endpoints/{ENDPOINT}")
        unauthorized = httpx.get(f"{served.base}/api/endpoints", timeout=30)
    assert unauthorized.status_code == 401
    assert listed.status_code == 200, listed.text
    assert listed.json()["backend"] == "cluster"
    [row] = listed.json()["endpoints"]
    assert (row["name"], row["kind"], row["state"], row["auth_mode"]) == (ENDPOINT, "online", "Deployed", "key")
    assert row["scoring_uri"] == f"https://{ENDPOINT}.studio.endpoints.example.com/score"
    assert shown.status_code == 200, shown.text
    info = shown.json()
    assert (info["traffic"], info["mirror_traffic"]) == ({"alice": 100, "bob": 0}, {"bob": 10})
    assert [(d["name"], d["traffic"], d["mirror"]) for d in info["deployments"]] == [("alice", 100, 0), ("bob", 0, 10)]
    assert all(d["image"] for d in info["deployments"]), info["deployments"]
    assert info["stack"] == STACK and info["endpoint_file"] == str(served.stack_file)


def test_traffic_preview_then_confirm(served: Served, kube: Any) -> None:
    before_file = served.stack_file.read_text()
    path = f"/api/endpoints/{ENDPOINT}/traffic"
    previewed = served.post(path, {"traffic": {"alice": 70, "bob": 30}})
    assert previewed.status_code == 200, previewed.text
    body = previewed.json()
    preview = body["preview"]
    assert body["applied"] is False and preview["refused"] is False, preview
    # Nothing applied: the stack file and the HTTPRoute are as they were, and the page shows the live split.
    assert served.stack_file.read_text() == before_file
    assert _route_weights(kube) == [("car-classifier-alice", 100)]  # bob at 0 % is left out of the route
    assert body["traffic"] == {"alice": 100, "bob": 0}
    assert preview["changes"] == [
        f"ml-endpoints:overrides.{ENDPOINT}.traffic.alice: 100 -> 70",
        f"ml-endpoints:overrides.{ENDPOINT}.traffic.bob: 0 -> 30",
        f"ml-endpoints:overrides.{ENDPOINT}.mirrorTraffic.bob: 10 -> (unset)",
    ]
    routes = [s for s in preview["steps"] if s["type"] == "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"]
    assert [(s["name"], s["op"]) for s in routes] == [(f"{ENDPOINT}-route", "update")], preview["steps"]
    assert any("backendRefs" in d for d in routes[0]["diffs"]), routes
    # The pack runs with prod's rules as warnings on this stack (see the fixture): its findings, with their level.
    assert list(preview["policy_packs"]) == ["ml-endpoints"], preview
    found = {(p["level"], p["policy"], p["urn"].rsplit("::", 1)[-1]) for p in preview["policies"]}
    assert found == {
        ("advisory", "prod-endpoint-private", f"{ENDPOINT}-route"),
        ("advisory", "min-replicas", f"{ENDPOINT}-alice-hpa"),
        ("advisory", "min-replicas", f"{ENDPOINT}-bob-deploy"),
    }, preview["policies"]

    # A confirm of other shares, or of an id never handed out, is refused and changes nothing.
    other = served.post(path, {"traffic": {"alice": 60, "bob": 40}, "confirm": preview["id"]})
    assert (other.status_code, other.json()) == (409, {"error": served.stale_error(preview["id"])})
    unknown = served.post(path, {"traffic": {"alice": 70, "bob": 30}, "confirm": "0123456789abcdef01234567"})
    assert (unknown.status_code, unknown.json()) == (
        409,
        {
            "error": (
                f"confirm: got '0123456789abcdef01234567'; no pending preview with that id for this change of {ENDPOINT};"
                " preview it again"
            )
        },
    )
    assert _route_weights(kube) == [("car-classifier-alice", 100)]  # bob at 0 % is left out of the route

    # The mismatched confirm used the id up: preview again, then confirm the very change.
    preview = served.post(path, {"traffic": {"alice": 70, "bob": 30}}).json()["preview"]
    applied = served.post(path, {"traffic": {"alice": 70, "bob": 30}, "confirm": preview["id"]})
    assert applied.status_code == 200, applied.text
    assert applied.json()["applied"] is True and applied.json()["up"]["result"] == "succeeded"
    assert applied.json()["traffic"] == {"alice": 70, "bob": 30}
    assert _route_weights(kube) == [("car-classifier-alice", 70), ("car-classifier-bob", 30)]
    config = yaml.safe_load(served.stack_file.read_text())["config"]
    assert config["ml-endpoints:overrides"][ENDPOINT]["traffic"] == {"alice": 70, "bob": 30}
    again = served.post(path, {"traffic": {"alice": 70, "bob": 30}, "confirm": preview["id"]})
    assert again.status_code == 409, again.text


def test_confirm_after_the_stack_file_changed_is_refused(served: Served, kube: Any) -> None:
    path = f"/api/endpoints/{ENDPOINT}/traffic"
    weights_before = _route_weights(kube)
    preview = served.post(path, {"traffic": {"alice": 50, "bob": 50}}).json()["preview"]
    original = served.stack_file.read_text()
    served.stack_file.write_text(original + "# edited by a reviewer after the preview\n")
    try:
        stale = served.post(path, {"traffic": {"alice": 50, "bob": 50}, "confirm": preview["id"]})
        assert (stale.status_code, stale.json()) == (409, {"error": served.stale_error(preview["id"])})
        assert served.stack_file.read_text() == original + "# edited by a reviewer after the preview\n"
        assert _route_weights(kube) == weights_before
    finally:
        served.stack_file.write_text(original)


def test_regenerate_a_key_previews_then_applies_without_showing_keys(served: Served, kube: Any) -> None:
    before = _secret_keys(kube)
    path = f"/api/endpoints/{ENDPOINT}/keys/regenerate"
    previewed = served.post(path, {"key": "secondary"})
    assert previewed.status_code == 200, previewed.text
    preview = previewed.json()["preview"]
    assert preview["changes"] == [f"ml-endpoints:keyRotation.{ENDPOINT}.secondary: (unset) -> 1"], preview
    steps = {(s["name"], s["op"]) for s in preview["steps"]}
    # The secondary key replaced (the Secret's data follows; its new value unknown until up); the primary kept.
    assert (f"{ENDPOINT}-secondary-key", "replace") in steps, preview["steps"]
    assert {op for name, op in steps if name == f"{ENDPOINT}-keys"} <= {"update", "replace"}, preview["steps"]
    assert (f"{ENDPOINT}-primary-key", "replace") not in steps
    assert _secret_keys(kube) == before
    applied = served.post(path, {"key": "secondary", "confirm": preview["id"]})
    assert applied.status_code == 200, applied.text
    after = _secret_keys(kube)
    assert after["primary"] == before["primary"] and after["secondary"] != before["secondary"]
    assert applied.json()["regenerated"] == "secondary"
    revealed = served.post(f"/api/endpoints/{ENDPOINT}/keys/reveal", {})
    assert revealed.json() == {"primaryKey": after["primary"], "secondaryKey": after["secondary"]}
    for key in (*before.values(), *after.values()):
        assert key not in previewed.text and key not in applied.text
        assert key not in served.log.read_text()
