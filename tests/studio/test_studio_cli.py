"""`endpoints studio` options: refusals before anything is served."""

from __future__ import annotations

import re
import socket
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from endpoints.cli.main import build_app
from endpoints.cli.studio import _loopback

runner = CliRunner()


def flat(text: str) -> str:
    """Typer's error box wraps lines: compare words only."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def studio(*args: str):
    return runner.invoke(build_app(("studio",)), ["studio", *args])


def test_stack_without_a_stack_file_names_the_file_and_the_stacks(tmp_path):
    (tmp_path / "Pulumi.yaml").write_text("name: ml-endpoints\nruntime: python\n")
    (tmp_path / "stacks").mkdir()
    for name in ("dev", "prod"):
        (tmp_path / "stacks" / f"Pulumi.{name}.yaml").write_text("config: {}\n")
    # The real CLI process (its stderr is what a user reads).
    proc = subprocess.run(
        [sys.executable, "-m", "endpoints.cli.main", "studio", "--stack", "nope", "--project", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert flat(proc.stderr) == (
        f"error: --stack nope: {tmp_path}/stacks/Pulumi.nope.yaml: no such stack file; stacks: ['dev', 'prod']"
    )


def test_stack_options_that_do_not_go_together(tmp_path):
    result = studio("--project", str(tmp_path))
    assert result.exit_code == 2
    assert "Invalid value for --project: goes with --stack (a cluster stack's Pulumi project)" in flat(result.output)
    (tmp_path / "endpoint.yml").write_text("name: b\n")
    result = studio("--stack", "dev", "--batch", str(tmp_path))
    assert result.exit_code == 2
    assert "Invalid value for --batch: batch folders are local endpoints; leave out --batch with --stack" in flat(
        result.output
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["--prometheus", "http://127.0.0.1:9090"],
            "Invalid value for --prometheus: goes with --stack (local endpoints' metrics are scraped by the studio)",
            id="prometheus-without-stack",
        ),
        pytest.param(
            ["--stack", "dev", "--prometheus", "prometheus:9090"],
            "Invalid value for --prometheus: got 'prometheus:9090'; give an http(s):// URL",
            id="prometheus-not-a-url",
        ),
        pytest.param(
            ["--endpoint-url", "cars=http://127.0.0.1:8080"],
            "Invalid value for --endpoint-url: goes with --stack (a cluster stack's endpoints)",
            id="endpoint-url-without-stack",
        ),
        pytest.param(
            ["--stack", "dev", "--endpoint-url", "http://127.0.0.1:8080"],
            "Invalid value for --endpoint-url: got 'http://127.0.0.1:8080'; give NAME=http(s)://...",
            id="endpoint-url-without-name",
        ),
        pytest.param(
            ["--stack", "dev", "--endpoint-url", "cars=http://a:1", "--endpoint-url", "cars=http://b:2"],
            "Invalid value for --endpoint-url: got 'cars' twice",
            id="endpoint-url-twice",
        ),
    ],
)
def test_cluster_options_refused_before_anything_starts(args, message):
    result = studio(*args)
    assert result.exit_code == 2, result.output
    assert message in flat(result.output)


def test_bad_batch_folder_and_short_token(tmp_path):
    result = studio("--batch", str(tmp_path), "--state-dir", str(tmp_path))
    assert result.exit_code == 2
    assert f"Invalid value for --batch: {tmp_path}: no endpoint.yml; give a batch endpoint folder" in flat(
        result.output
    )
    result = studio("--token", "short", "--state-dir", str(tmp_path))
    assert result.exit_code == 2
    assert "Invalid value for --token: got 5 characters; use at least 16" in flat(result.output)


def test_port_in_use(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = studio("--port", str(port), "--state-dir", str(tmp_path))
    assert result.exit_code == 1
    assert (
        flat(result.output)
        == f"error: cannot listen on 127.0.0.1:{port}: Address already in use; choose another --port"
    )


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("192.168.1.5", False),
        ("example.com", False),
    ],
)
def test_loopback_hosts(host, loopback):
    assert _loopback(host) is loopback
