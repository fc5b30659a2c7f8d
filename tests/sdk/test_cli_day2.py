"""`endpoints list|show|logs|regenerate-keys|invoke|get-credentials` on a real local endpoint, as subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sdk_helpers import eventually

from endpoints.sdk import LocalEndpoints


@pytest.fixture
def cli(tmp_path: Path, local: LocalEndpoints):
    env = {**os.environ, "ENDPOINTS_STATE_DIR": str(local.root), "COLUMNS": "250"}

    def run(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "endpoints.cli.main", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == code, f"{args}: rc {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    return run


def test_list_show_logs(shop, cli, tmp_path: Path) -> None:
    listed = json.loads(cli("list", "--json").stdout)
    assert listed == [{"name": "shop", "kind": "online", "state": "running", "scoring_uri": shop["scoring_uri"]}]
    shown = json.loads(cli("show", "shop", "--json").stdout)
    assert shown["scoring_uri"] == shop["scoring_uri"] and shown["traffic"] == {"blue": 90, "green": 10}
    assert [d["deployment"] for d in shown["deployment_states"]] == ["blue", "green"]
    text = cli("show", "shop").stdout
    assert "endpoint shop (online, auth key)" in text and f"scoring uri: {shop['scoring_uri']}" in text
    (tmp_path / "req.json").write_text("{}")
    cli("invoke", "shop", "--request-file", str(tmp_path / "req.json"), "--deployment", "green")
    logs = eventually(
        lambda: (lambda got: got if '"route":"/score"' in got["green"] else None)(
            json.loads(cli("logs", "shop", "--deployment", "green", "--tail", "50", "--json").stdout)
        ),
        timeout_s=30,
        poll_s=0.5,
    )
    assert list(logs) == ["green"]
    missing = cli("show", "nope", "--json", code=1)
    assert json.loads(missing.stdout)["error"].startswith("no local endpoint named 'nope' in ")
    missing = cli("logs", "shop", "--deployment", "nope", code=1)
    assert missing.stderr.strip() == "error: no log for 'nope' (logs: blue, green, router)"


def test_invoke_by_folder_and_url_json(shop, cli, tmp_path: Path, local: LocalEndpoints) -> None:
    request = tmp_path / "req.json"
    request.write_text('{"hello": "world"}')
    by_folder = json.loads(
        cli("invoke", str(tmp_path / "shop"), "--request-file", str(request), "--deployment", "blue", "--json").stdout
    )
    assert by_folder["status"] == 200 and by_folder["deployment"] == "blue" and by_folder["attempts"] == 1
    assert by_folder["body"] == {"deployment": "blue", "body": {"hello": "world"}} and by_folder["request_id"]
    key = local.credentials("shop")["secondaryKey"]
    by_url = cli("invoke", shop["scoring_uri"], "--request-file", str(request), "--token", key, "--deployment", "green")
    assert json.loads(by_url.stdout) == {"deployment": "green", "body": {"hello": "world"}}
    assert "HTTP 200 from deployment green" in by_url.stderr
    denied = cli("invoke", shop["scoring_uri"], "--request-file", str(request), "--json", code=1)
    assert json.loads(denied.stdout)["status"] == 401


def test_regenerate_keys_cli(shop, cli, local: LocalEndpoints) -> None:
    before = json.loads(cli("get-credentials", "shop").stdout)
    out = json.loads(cli("regenerate-keys", "shop", "--key", "secondary", "--json").stdout)
    assert out == {"endpoint": "shop", "regenerated": "secondary"}
    after = json.loads(cli("get-credentials", "shop").stdout)
    assert after["primaryKey"] == before["primaryKey"] and after["secondaryKey"] != before["secondaryKey"]
    with httpx.Client(timeout=10) as client:
        for key, expected in ((after["secondaryKey"], 200), (before["secondaryKey"], 401), (after["primaryKey"], 200)):
            r = client.post(shop["scoring_uri"], json={}, headers={"authorization": f"Bearer {key}"})
            assert r.status_code == expected
    bad = cli("regenerate-keys", "shop", "--key", "tertiary", "--json", code=1)
    assert json.loads(bad.stdout) == {"error": "--key: got 'tertiary'; choose primary or secondary"}
