"""Payload logging end to end in local mode: `endpoints local up` of a folder whose deployment has a data_collector,
requests through the local router, lines under the endpoint's state folder."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from obs_helpers import local_cli, write_shop

SCORE = "import json\n\ndef init():\n    pass\n\ndef run(raw):\n    return {'sum': sum(json.loads(raw)['data'])}\n"
COLLECTOR = """\
data_collector:
  collections:
    model_inputs:
      enabled: 'True'
    model_outputs:
      enabled: 'True'
  rolling_rate: Day
"""


def test_local_up_collects_inputs_and_outputs_under_the_state_folder(tmp_path: Path):
    root = write_shop(tmp_path / "shop", SCORE)
    blue = root / "deployments" / "blue.yml"
    blue.write_text(blue.read_text() + COLLECTOR)
    cli = local_cli(tmp_path)
    folder = tmp_path / "state" / "shop" / "data-collector" / "blue"

    up = cli("local", "up", str(root), "--port", "0", "--detach")
    assert up.returncode == 0, up.stderr
    try:
        assert f"  data collector (blue): {folder}\n" in up.stdout
        status = cli("local", "status", "shop")
        assert f"  data collector (blue): {folder}\n" in status.stdout, status.stdout
        state = json.loads((tmp_path / "state" / "shop" / "state.json").read_text())
        key = json.loads(cli("get-credentials", "shop").stdout)["primaryKey"]
        url = f"http://127.0.0.1:{state['router']['port']}"
        with httpx.Client(timeout=30) as c:
            for i in range(5):
                r = c.post(
                    f"{url}/score",
                    json={"data": [i, 10]},
                    headers={"authorization": f"Bearer {key}", "x-request-id": f"local-{i}"},
                )
                assert (r.status_code, r.json()) == (200, {"sum": i + 10})
    finally:
        down = cli("local", "down", "shop")
    assert down.returncode == 0, down.stderr
    lines = {}
    for path in sorted(folder.rglob("*.jsonl")):
        collection = path.relative_to(folder).parts[0]
        lines.setdefault(collection, []).extend(json.loads(x) for x in path.read_text().splitlines())
    assert {c: sorted((x["correlationid"], json.dumps(x["data"])) for x in items) for c, items in lines.items()} == {
        "model_inputs": [(f"local-{i}", json.dumps({"data": [i, 10]})) for i in range(5)],
        "model_outputs": [(f"local-{i}", json.dumps({"sum": i + 10})) for i in range(5)],
    }
    assert {(x["endpoint"], x["deployment"]) for items in lines.values() for x in items} == {("shop", "blue")}
    assert key not in "".join(p.read_text() for p in folder.rglob("*.jsonl"))
    assert (folder.parent.stat().st_mode & 0o777) == 0o700  # payloads stay owner-only, as the keys do
