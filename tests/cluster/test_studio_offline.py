"""`endpoints studio --stack` with the real Pulumi engine and no cluster: a stack that was never brought up, whose
preview the Kubernetes provider computes offline. Runs wherever the toolchain's Pulumi binaries are (no API server):
the page's reads from the stack file, the preview with the policy pack's findings, and every refusal of a confirm
(the apply itself, which needs the API server, is in test_studio_cluster.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cluster_helpers import PULUMI_BINARIES, REPO, Project, copy_repo, pulumi_env, require
from studio_stack import ENDPOINT, ENGINE_TIMEOUT_S, STACK, TOKEN, Served, start, write_stack_file

pytestmark = [pytest.mark.pulumi_cli, pytest.mark.slow, pytest.mark.timeout(600)]

TRAFFIC = f"/api/endpoints/{ENDPOINT}/traffic"
ARTIFACTS = REPO / "out" / "studio-screenshots"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    require(PULUMI_BINARIES)
    base = tmp_path_factory.mktemp("studio-offline")
    (base / "backend").mkdir()
    env = {**pulumi_env(base / "backend", None), "PULUMI_PYTHON_CMD": sys.executable}
    project = Project(copy_repo(base / "repo"), env)
    write_stack_file(project.root)
    project.pulumi("stack", "init", STACK, "--secrets-provider", "passphrase")
    studio = start(project.root, env, base / "studio.log")
    try:
        yield studio
    finally:
        studio.stop()


def test_the_page_reads_the_stack_file(served: Served) -> None:
    with served.client() as c:
        listed = c.get("/api/endpoints").json()
        info = c.get(f"/api/endpoints/{ENDPOINT}").json()
        missing = c.get("/api/endpoints/nope")
    assert (listed["backend"], listed["stack"]) == ("cluster", STACK)
    assert [(r["name"], r["kind"], r["state"], r["scoring_uri"]) for r in listed["endpoints"]] == [
        (ENDPOINT, "online", "Not deployed", None)
    ]
    assert (info["traffic"], info["mirror_traffic"], info["stack"]) == ({"alice": 100, "bob": 0}, {"bob": 10}, STACK)
    pinned = yaml.safe_load(served.stack_file.read_text())["config"]["ml-endpoints:overrides"][ENDPOINT]["deployments"]
    # Images pinned in the stack file; alice's count from its deployment file (autoscaled), bob's from the override.
    assert [(d["name"], d["state"], d["image"], d["instance_count"]) for d in info["deployments"]] == [
        ("alice", "Not deployed", pinned["alice"]["image"], 1),
        ("bob", "Not deployed", pinned["bob"]["image"], 2),
    ]
    assert (missing.status_code, missing.json()) == (
        404,
        {"error": (f"{served.stack_file}: stack {STACK} has no endpoint 'nope' (endpoints: {ENDPOINT})")},
    )


def test_preview_shows_the_changes_and_the_policy_findings_and_applies_nothing(served: Served) -> None:
    before = served.stack_file.read_text()
    answer = served.post(TRAFFIC, {"traffic": {"alice": 70, "bob": 30}})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    preview = body["preview"]
    assert (body["applied"], preview["refused"], preview["error"]) == (False, False, None)
    assert served.stack_file.read_text() == before
    assert body["traffic"] == {"alice": 100, "bob": 0}
    assert preview["changes"] == [
        f"ml-endpoints:overrides.{ENDPOINT}.traffic.alice: 100 -> 70",
        f"ml-endpoints:overrides.{ENDPOINT}.traffic.bob: 0 -> 30",
        f"ml-endpoints:overrides.{ENDPOINT}.mirrorTraffic.bob: 10 -> (unset)",
    ]
    # Never brought up: every resource is a create, the HTTPRoute among them.
    assert {s["op"] for s in preview["steps"]} == {"create"}
    assert (f"{ENDPOINT}-route", "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute") in {
        (s["name"], s["type"]) for s in preview["steps"]
    }
    assert preview["summary"] == {"create": len(preview["steps"]) - 2}  # the stack and the provider are not counted
    assert preview["policy_packs"] == {"ml-endpoints": "0.1.0"}
    found = {(p["level"], p["policy"], p["urn"].rsplit("::", 1)[-1]) for p in preview["policies"]}
    assert found == {
        ("advisory", "prod-endpoint-private", f"{ENDPOINT}-route"),
        ("advisory", "min-replicas", f"{ENDPOINT}-alice-hpa"),
        ("advisory", "min-replicas", f"{ENDPOINT}-bob-deploy"),
    }, preview["policies"]


def test_confirms_that_are_not_the_previewed_change_are_refused(served: Served) -> None:
    preview = served.post(TRAFFIC, {"traffic": {"alice": 70, "bob": 30}}).json()["preview"]
    other = served.post(TRAFFIC, {"traffic": {"alice": 60, "bob": 40}, "confirm": preview["id"]})
    assert (other.status_code, other.json()) == (409, {"error": served.stale_error(preview["id"])})
    # The refused confirm used the id up.
    reused = served.post(TRAFFIC, {"traffic": {"alice": 70, "bob": 30}, "confirm": preview["id"]})
    assert (reused.status_code, reused.json()) == (
        409,
        {
            "error": (
                f"confirm: got '{preview['id']}'; no pending preview with that id for this change of {ENDPOINT}; "
                "preview it again"
            )
        },
    )
    # A preview's id does not confirm another kind of change either.
    preview = served.post(TRAFFIC, {"traffic": {"alice": 70, "bob": 30}}).json()["preview"]
    key = served.post(f"/api/endpoints/{ENDPOINT}/keys/regenerate", {"key": "secondary", "confirm": preview["id"]})
    assert key.status_code == 409 and key.json()["error"].startswith(f"confirm: got '{preview['id']}'; no pending")
    # The stack file edited after the preview: the confirm is stale and nothing is written.
    original = served.stack_file.read_text()
    served.stack_file.write_text(original + "# edited by a reviewer after the preview\n")
    try:
        stale = served.post(TRAFFIC, {"traffic": {"alice": 70, "bob": 30}, "confirm": preview["id"]})
        assert (stale.status_code, stale.json()) == (409, {"error": served.stale_error(preview["id"])})
        assert served.stack_file.read_text() == original + "# edited by a reviewer after the preview\n"
    finally:
        served.stack_file.write_text(original)


def test_bad_changes_are_refused_before_any_preview(served: Served) -> None:
    split = served.post(TRAFFIC, {"traffic": {"alice": 70, "bob": 20}})
    assert (split.status_code, split.json()) == (
        400,
        {
            "error": (
                f"{served.stack_file}: ml-endpoints:overrides.{ENDPOINT}.traffic: got 70+20=90; "
                "live traffic must sum to 0 or 100"
            )
        },
    )
    same = served.post(TRAFFIC, {"traffic": {"alice": 100, "bob": 0}, "mirror_traffic": {"bob": 10}}).json()
    assert (same["preview"]["refused"], same["preview"]["error"], same["preview"]["changes"]) == (
        True,
        f"no change: {served.stack_file} already holds it",
        [],
    )
    confirm = served.post(TRAFFIC, {"traffic": {"alice": 70, "bob": 30}, "confirm": 7})
    assert (confirm.status_code, confirm.json()) == (
        400,
        {"error": "confirm: got 7; send the id of the preview to apply"},
    )
    key = served.post(f"/api/endpoints/{ENDPOINT}/keys/regenerate", {"key": "tertiary"})
    assert (key.status_code, key.json()) == (400, {"error": "key: got 'tertiary'; regenerate primary or secondary"})
    keys = served.post(f"/api/endpoints/{ENDPOINT}/keys/reveal", {})
    assert (keys.status_code, keys.json()) == (
        409,
        {"error": (f"stack {STACK}: no keys exported for {ENDPOINT}; run `pulumi up` first")},
    )


def test_the_page_shows_the_preview_with_a_confirm_button(served: Served) -> None:
    """In Debian's chromium (skipped without it: the studio's own browser tests are where a missing browser fails):
    Preview shows the stack file edits, the resources and the policy findings; nothing is applied without Confirm."""
    executable = "/usr/bin/chromium"
    if not Path(executable).exists():
        pytest.skip("chromium is not installed (tests/studio/test_studio_browser.py fails for that)")
    from playwright.sync_api import sync_playwright

    before = served.stack_file.read_text()
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=executable, headless=True, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{served.base}/?token={TOKEN}")
            page.locator("#backend").filter(has_text=f"cluster stack {STACK}").wait_for()  # the header names the stack
            page.locator(f'a[href="#/online/{ENDPOINT}"]').click()
            page.locator("#traffic-edit").click()
            assert page.locator("#traffic-save").inner_text() == "Preview"
            page.fill('input[name="traffic-alice"]', "70")
            page.fill('input[name="traffic-bob"]', "30")
            page.fill('input[name="mirror-bob"]', "0")
            page.locator("#traffic-save").click()
            page.locator("#preview-steps").wait_for(timeout=ENGINE_TIMEOUT_S * 1000)
            assert page.locator("#preview-changes li").all_inner_texts() == [
                f"ml-endpoints:overrides.{ENDPOINT}.traffic.alice: 100 -> 70",
                f"ml-endpoints:overrides.{ENDPOINT}.traffic.bob: 0 -> 30",
                f"ml-endpoints:overrides.{ENDPOINT}.mirrorTraffic.bob: 10 -> (unset)",
            ]
            route = page.locator('#preview-steps tr[data-op="create"]', has_text=f"{ENDPOINT}-route")
            assert route.locator("td").nth(1).inner_text() == "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"
            levels = page.locator("#preview-policies tbody tr td:first-child").all_inner_texts()
            policies = page.locator("#preview-policies tbody tr td:nth-child(2)").all_inner_texts()
            assert sorted(zip(levels, policies, strict=True)) == [
                ("advisory", "min-replicas"),
                ("advisory", "min-replicas"),
                ("advisory", "prod-endpoint-private"),
            ]
            assert page.locator("#preview-confirm").is_enabled()
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "cluster-traffic-preview.png"), full_page=True)
            assert errors == [], f"JavaScript errors on the page: {errors}"
        finally:
            browser.close()
    assert served.stack_file.read_text() == before
