"""``endpoints validate`` as a user runs it: a real process, real files, exit codes and output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "azure"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "endpoints.cli.main", "validate", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )


def test_valid_folders_exit_0() -> None:
    result = run(str(FIXTURES / "online"), str(FIXTURES / "batch"))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert f"ok: {FIXTURES / 'online'}" in result.stdout
    assert "note: " in result.stdout  # the kubernetes fixture enables app insights


def test_problems_one_per_line_exit_1(tmp_path: Path) -> None:
    (tmp_path / "endpoint.yml").write_text("name: cars\ntraffic:\n  alice: 90\n  bob: 20\n", encoding="utf-8")
    (tmp_path / "other.yml").write_text("name: x\n", encoding="utf-8")
    result = run("endpoint.yml", "other.yml", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "endpoint.yml:2: traffic: got 90+20=110; live traffic must sum to 0 or 100",
        "other.yml:1: name: got 'x'; names are 3 to 32 characters: a letter first, then letters, digits or hyphens, and no hyphen last (they become Kubernetes names)",
    ]


def test_json_report(tmp_path: Path) -> None:
    (tmp_path / "endpoint.yml").write_text("name: cars\nauth_mode: none\n", encoding="utf-8")
    result = run("--json", "endpoint.yml", cwd=tmp_path)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["valid"] is False
    assert report["problems"] == [
        {
            "file": "endpoint.yml",
            "line": 2,
            "path": "auth_mode",
            "message": "got 'none'; input should be 'key', 'aml_token' or 'aad_token'",
        }
    ]


def test_missing_file(tmp_path: Path) -> None:
    result = run("nope.yml", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == "nope.yml: cannot read: No such file or directory"
