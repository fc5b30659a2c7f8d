"""A deployment built on the user's own ``environment.image`` (serving/Dockerfile.custom-base), built and run for real
with podman. One test: image builds are slow.

The "user image" is the local Debian base plus a package only that image has (a module in the system
site-packages), so the test shows both that the serving layer runs on it and that the scoring script still sees the
user's own packages.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from images_helpers import build_image, free_port, podman, run_container

from endpoints.images import custom_base_image_build, deployment_image_build
from endpoints.project import load_endpoint_project

pytestmark = [pytest.mark.podman, pytest.mark.slow, pytest.mark.timeout(900)]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())


def test_deployment_on_a_user_image_keeps_its_packages_and_scores(base_image: str, tmp_path: Path) -> None:
    user = tmp_path / "user-image"
    _write(
        user / "Containerfile",
        f"""
        FROM {base_image}
        RUN mkdir -p /usr/lib/python3/dist-packages && printf 'GREETING = "from the user image"\\n' \\
              > /usr/lib/python3/dist-packages/teamlib.py
        """,
    )
    podman("build", "-t", "localhost/team-python:test", "-f", str(user / "Containerfile"), str(user), timeout=300)
    build_image(custom_base_image_build("localhost/team-python:test"), "localhost/team-python-serving:test")

    root = tmp_path / "greeter"
    _write(root / "endpoint.yml", "name: greeter\nauth_mode: key\ntraffic: {blue: 100}\n")
    _write(
        root / "deployments" / "blue.yml",
        """
        name: blue
        endpoint_name: greeter
        instance_type: Standard_DS3_v2
        model: {path: ../model}
        code_configuration: {code: ../code, scoring_script: score.py}
        environment: {image: localhost/team-python:test}
        """,
    )
    _write(root / "model" / "suffix.txt", "!")
    _write(
        root / "code" / "score.py",
        """
        import json
        import os
        import sys

        import teamlib


        def init():
            global SUFFIX
            SUFFIX = open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model", "suffix.txt")).read()


        def run(raw):
            name = json.loads(raw)["name"]
            return {"text": f"hello {name} {teamlib.GREETING}{SUFFIX}", "python": sys.prefix}
        """,
    )
    project = load_endpoint_project(root)
    recipe = deployment_image_build(
        project.deployments["blue"], project.deployment_file("blue"), "localhost/team-python-serving:test", root
    )
    assert recipe is not None
    build_image(recipe, "localhost/greeter-blue:test")
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o755)
    (keys / "primary").write_text("primary-key-0123456789")
    (keys / "secondary").write_text("secondary-key-9876543210")
    for f in keys.iterdir():
        f.chmod(0o644)
    options = (
        "-v",
        f"{keys}:/etc/endpoints/keys:ro",
        "-e",
        "ENDPOINTS_AUTH_MODE=key",
        "-e",
        "ENDPOINTS_KEYS_DIR=/etc/endpoints/keys",
    )
    with run_container(
        "localhost/greeter-blue:test",
        "--host",
        "127.0.0.1",
        "--port",
        str(port := free_port()),
        options=options,
        port=port,
    ) as c:
        c.wait_ready()
        with httpx.Client(base_url=c.url, timeout=30) as client:
            auth = {"Authorization": "Bearer primary-key-0123456789"}
            r = client.post("/score", json={"name": "ada"}, headers=auth)
            assert (r.status_code, r.json()) == (
                200,
                {"text": "hello ada from the user image!", "python": "/opt/endpoints-venv"},
            )
            r = client.post("/score", json={"name": "ada"})
            assert (r.status_code, r.json()) == (401, {"error": "missing or invalid credentials"})


def test_custom_container_runs_in_local_mode_behind_the_auth_proxy(base_image: str, tmp_path: Path) -> None:
    # The custom container: the standard library's http.server on the local base image (nothing of this project).
    ctx = tmp_path / "byoc-image"
    ctx.mkdir()
    server = Path(__file__).resolve().parents[1] / "serving" / "scripts" / "byoc_server.py"
    (ctx / "byoc_server.py").write_text(server.read_text())
    _write(
        ctx / "Containerfile",
        f"""
        FROM {base_image}
        COPY byoc_server.py /srv/byoc_server.py
        CMD ["sh", "-c", "exec python3 /srv/byoc_server.py $PORT"]
        """,
    )
    podman("build", "-t", "localhost/byoc-sum:test", "-f", str(ctx / "Containerfile"), str(ctx), timeout=300)
    port = free_port()
    root = tmp_path / "summer"
    _write(root / "endpoint.yml", "name: summer\nauth_mode: key\ntraffic: {own: 100}\n")
    _write(
        root / "deployments" / "own.yml",
        f"""
        name: own
        endpoint_name: summer
        instance_type: Standard_DS3_v2
        environment_variables: {{PORT: {port}}}
        environment:
          image: localhost/byoc-sum:test
          inference_config:
            liveness_route: {{port: {port}, path: /alive}}
            readiness_route: {{port: {port}, path: /healthy}}
            scoring_route: {{port: {port}, path: /predict}}
        """,
    )
    helper = str(Path(__file__).resolve().parents[2] / "scripts" / "images" / "podman.sh")
    env = {**os.environ, "ENDPOINTS_STATE_DIR": str(tmp_path / "state"), "ENDPOINTS_PODMAN": helper}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "endpoints.cli.main", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    try:
        up = cli("local", "up", str(root), "--detach", "--port", "0", "--json")
        assert up.returncode == 0, up.stdout + up.stderr
        # The router passes every path on: the container's scoring route through the endpoint's port.
        uri = json.loads(up.stdout)["scoring_uri"].rsplit("/", 1)[0] + "/predict"
        key = json.loads(cli("get-credentials", "summer").stdout)["primaryKey"]
        with httpx.Client(timeout=30) as client:
            r = client.post(uri, json={"data": [1, 2, 39]}, headers={"Authorization": f"Bearer {key}"})
            assert (r.status_code, r.json()) == (200, {"sum": 42, "authorization": None, "query": ""})
            assert r.headers["azureml-model-deployment"] == "own"
            r = client.post(uri, json={"data": [1]})
            assert (r.status_code, r.json()) == (401, {"error": "missing or invalid credentials"})
    finally:
        down = cli("local", "down")
    assert down.returncode == 0, down.stdout + down.stderr
    # The container went with its proxy.
    left = podman("ps", "-a", "--filter", "name=endpoints-local-summer-own", "--format", "{{.Names}}", check=False)
    assert left.stdout.strip() == ""


def test_custom_container_gets_its_code_and_local_mode_prints_its_scoring_route(
    base_image: str, tmp_path: Path
) -> None:
    """``code_configuration`` of a custom container: mounted read-only at ``/var/azureml-app/<folder>`` with
    ``AML_APP_ROOT`` and ``AZUREML_ENTRY_SCRIPT`` set, as Azure does; the image runs whatever script those name (as
    Azure's inference-server images do), so the server answering below is the mounted code. The printed
    ``scoring_uri`` ends in the container's scoring route, as on the cluster."""
    ctx = tmp_path / "runs-entry-script"
    _write(
        ctx / "Containerfile",
        f"""
        FROM {base_image}
        CMD ["sh", "-c", "exec python3 \\"$AML_APP_ROOT/$AZUREML_ENTRY_SCRIPT\\" $PORT"]
        """,
    )
    podman("build", "-t", "localhost/byoc-entry:test", "-f", str(ctx / "Containerfile"), str(ctx), timeout=300)
    port = free_port()
    root = tmp_path / "summer"
    server = Path(__file__).resolve().parents[1] / "serving" / "scripts" / "byoc_server.py"
    _write(root / "serve-code" / "serve.py", server.read_text())
    _write(root / "endpoint.yml", "name: summer\nauth_mode: key\ntraffic: {own: 100}\n")
    _write(
        root / "deployments" / "own.yml",
        f"""
        name: own
        endpoint_name: summer
        instance_type: Standard_DS3_v2
        environment_variables: {{PORT: {port}}}
        code_configuration: {{code: ../serve-code, scoring_script: serve.py}}
        environment:
          image: localhost/byoc-entry:test
          inference_config:
            liveness_route: {{port: {port}, path: /alive}}
            readiness_route: {{port: {port}, path: /healthy}}
            scoring_route: {{port: {port}, path: /predict}}
        """,
    )
    helper = str(Path(__file__).resolve().parents[2] / "scripts" / "images" / "podman.sh")
    env = {**os.environ, "ENDPOINTS_STATE_DIR": str(tmp_path / "state"), "ENDPOINTS_PODMAN": helper}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "endpoints.cli.main", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    try:
        up = cli("local", "up", str(root), "--detach", "--port", "0", "--json")
        assert up.returncode == 0, up.stdout + up.stderr
        summary = json.loads(up.stdout)
        router_port = summary["router"]["port"]
        assert summary["scoring_uri"] == f"http://127.0.0.1:{router_port}/predict"
        key = json.loads(cli("get-credentials", "summer").stdout)["primaryKey"]
        with httpx.Client(timeout=30) as client:
            r = client.post(summary["scoring_uri"], json={"data": [40, 2]}, headers={"Authorization": f"Bearer {key}"})
            assert (r.status_code, r.json()) == (200, {"sum": 42, "authorization": None, "query": ""})
        # Read-only: the container cannot change the code it was given.
        probe = podman(
            "exec",
            "endpoints-local-summer-own",
            "sh",
            "-c",
            "touch /var/azureml-app/serve-code/x 2>&1; echo $AZUREML_ENTRY_SCRIPT",
            check=False,
        )
        assert probe.stdout.strip().splitlines()[-1] == "serve-code/serve.py"
        assert "Read-only file system" in probe.stdout
        show = cli("local", "status")
        assert f"http://127.0.0.1:{router_port}/predict" in show.stdout, show.stdout + show.stderr
    finally:
        down = cli("local", "down")
    assert down.returncode == 0, down.stdout + down.stderr
