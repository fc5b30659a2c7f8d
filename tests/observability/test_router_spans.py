"""The local router's own spans (OTLP export on): one per routed request and one per mirror copy, each the parent
of the deployment's span through the traceparent the router sends. Real `endpoints local up`, real OTLP/HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from obs_helpers import write_shop
from otlp_receiver import OtlpReceiver

SCORE = "def init():\n    pass\n\ndef run(raw):\n    return {'ok': True}\n"
TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"


def _attributes(span) -> dict:
    return {a.key: getattr(a.value, a.value.WhichOneof("value")) for a in span.attributes}


def test_router_spans_parent_the_deployments_spans_live_and_mirrored(tmp_path: Path):
    root = write_shop(tmp_path / "shop", SCORE)
    (root / "endpoint.yml").write_text(
        "name: shop\nauth_mode: key\ntraffic:\n  blue: 100\nmirror_traffic:\n  green: 50\n"
    )
    blue = (root / "deployments" / "blue.yml").read_text()
    (root / "deployments" / "green.yml").write_text(blue.replace("name: blue", "name: green"))
    receiver = OtlpReceiver()
    env = {
        **os.environ,
        "ENDPOINTS_STATE_DIR": str(tmp_path / "state"),
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "endpoints.cli.main", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    try:
        up = cli("local", "up", str(root), "--port", "0", "--detach")
        assert up.returncode == 0, up.stderr
        try:
            state = json.loads((tmp_path / "state" / "shop" / "state.json").read_text())
            key = json.loads(cli("get-credentials", "shop").stdout)["primaryKey"]
            url = f"http://127.0.0.1:{state['router']['port']}"
            with httpx.Client(timeout=30) as c:
                # Half the requests are mirrored (at random): 24 requests miss every copy with odds 2**-24.
                for i in range(24):
                    headers = {
                        "authorization": f"Bearer {key}",
                        "x-request-id": f"t-{i}",
                        "traceparent": f"00-{TRACE}-{PARENT}-01",
                    }
                    assert c.post(f"{url}/score", json={}, headers=headers).status_code == 200

            def spans(instance: str) -> list:
                return [s for res, s in receiver.spans if res.get("service.instance.id") == instance]

            deadline = time.monotonic() + 60  # batched export; generous under a loaded machine
            while time.monotonic() < deadline and not (
                len([s for s in spans("router") if s.name == "route POST"]) == 24
                and len(spans("blue")) == 24
                and spans("green")
                and len(spans("green")) == len([s for s in spans("router") if s.name == "mirror POST"])
            ):
                time.sleep(0.1)
        finally:
            assert cli("local", "down", "shop").returncode == 0
    finally:
        receiver.close()

    counts = {i: len(spans(i)) for i in ("router", "blue", "green")}
    router = {(s.name, _attributes(s)["endpoints.request_id"]): s for s in spans("router")}
    assert len(router) == counts["router"], counts
    live = {rid: s for (name, rid), s in router.items() if name == "route POST"}
    mirrors = {rid: s for (name, rid), s in router.items() if name == "mirror POST"}
    assert sorted(live) == sorted(f"t-{i}" for i in range(24))
    assert mirrors, "no request was mirrored"
    for rid, span in live.items():
        # The client's trace continues: the router span is the caller's span's child.
        assert (span.trace_id.hex(), span.parent_span_id.hex(), span.kind) == (TRACE, PARENT, 2)  # SERVER
        assert _attributes(span) == {
            "http.request.method": "POST",
            "endpoints.deployment": "blue",
            "endpoints.routed_by": "weight",
            "endpoints.request_id": rid,
            "http.response.status_code": 200,
        }
    deployment = {_attributes(s)["endpoints.request_id"]: s for s in spans("blue")}
    assert {rid: (s.trace_id.hex(), s.parent_span_id) for rid, s in deployment.items()} == {
        rid: (TRACE, span.span_id) for rid, span in live.items()
    }
    for rid, span in mirrors.items():
        assert (span.trace_id.hex(), span.parent_span_id, span.kind) == (TRACE, live[rid].span_id, 3)  # CLIENT
        assert _attributes(span) == {
            "http.request.method": "POST",
            "endpoints.deployment": "green",
            "endpoints.routed_by": "mirror",
            "endpoints.mirror": True,
            "endpoints.request_id": rid,
            "http.response.status_code": 200,
        }
    copies = {_attributes(s)["endpoints.request_id"]: s for s in spans("green")}
    assert {
        rid: (s.trace_id.hex(), s.parent_span_id, _attributes(s)["endpoints.mirror"]) for rid, s in copies.items()
    } == {rid: (TRACE, span.span_id, True) for rid, span in mirrors.items()}
