"""Stack config, overrides, image recipe and whole-stack rendering (pure: no Pulumi engine)."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml

from components.builders.image import image_build_args
from components.builders.stack import render_stack
from components.builders.stack_config import CONFIG_KEYS, load_stack_config, settings_from_config
from components.builders.stack_resolve import resolve_stack
from components.k8s_schema import validate_objects
from endpoints.errors import SpecError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "car-classifier"
STACKS = ["dev", "staging", "prod"]
DOMAINS = {
    "dev": "dev.endpoints.example.com",
    "staging": "staging.endpoints.example.com",
    "prod": "endpoints.internal.example.com",
}
DIGEST = "registry.example.com/ml/x@sha256:" + "cd" * 32


def _settings(stack: str, **extra: object):
    values = load_stack_config(REPO, stack)
    values.update(extra)
    return settings_from_config(values, stack)


def _copy_example(tmp_path: Path, name: str) -> Path:
    dest = tmp_path / name
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("samples", "train.py", "carsynth.py", "__pycache__"))
    for path in [dest / "endpoint.yml", *(dest / "deployments").glob("*.yml")]:
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace("car-classifier", name), encoding="utf-8")
    return dest


def test_pulumi_yaml_declares_exactly_the_config_keys() -> None:
    declared = yaml.safe_load((REPO / "Pulumi.yaml").read_text(encoding="utf-8"))["config"]
    assert sorted(declared) == sorted(f"ml-endpoints:{k}" for k in CONFIG_KEYS)
    for key, decl in CONFIG_KEYS.items():
        entry = declared[f"ml-endpoints:{key}"]
        assert entry.get("type") == decl.type, key
        assert entry["default"] == decl.default, key
        assert entry["description"] == decl.description, key
        if decl.type == "array":
            assert entry["items"] == {"type": "string"}, key


@pytest.mark.parametrize("stack", STACKS)
def test_stack_files_use_only_declared_keys_of_the_right_type(stack: str) -> None:
    values = load_stack_config(REPO, stack)
    py_types = {"string": str, "integer": int, "boolean": bool, "array": list, None: dict}
    for key, value in values.items():
        assert key in CONFIG_KEYS, f"stacks/Pulumi.{stack}.yaml: ml-endpoints:{key} is not declared in Pulumi.yaml"
        assert isinstance(value, py_types[CONFIG_KEYS[key].type]), (stack, key, value)


def test_unknown_config_key_is_refused() -> None:
    with pytest.raises(SpecError) as e:
        settings_from_config({"namespce": "x"}, "stacks/Pulumi.dev.yaml")
    assert str(e.value).startswith("<spec>: stacks/Pulumi.dev.yaml: unknown config keys ['namespce']; known: [")


def test_bad_config_value_names_key_and_value() -> None:
    with pytest.raises(SpecError) as e:
        settings_from_config({"publicNetworkAccess": "private"}, "stacks/Pulumi.prod.yaml")
    assert str(e.value) == (
        "<spec>: stacks/Pulumi.prod.yaml: ml-endpoints:publicNetworkAccess: got 'private'; Input should be '',"
        " 'enabled' or 'disabled'"
    )
    with pytest.raises(SpecError) as e:
        settings_from_config({"publicGateway": "public"}, "stack dev")
    assert str(e.value) == "<spec>: ml-endpoints:publicGateway: got 'public'; write the gateway as <namespace>/<name>"


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_renders_and_validates(stack: str) -> None:
    rendered = render_stack(_settings(stack), REPO)
    assert validate_objects(rendered.objects) == []
    kinds = Counter(o["kind"] for o in rendered.objects)
    # Online: 2 deployments, 1 route, 1 keys Secret; batch: the job API's Deployment/Service, its route and keys.
    assert (kinds["Deployment"], kinds["Service"], kinds["HTTPRoute"], kinds["Secret"]) == (3, 3, 2, 2)
    assert (kinds["ClusterQueue"], kinds["ResourceFlavor"], kinds["PriorityClass"], kinds["LocalQueue"]) == (1, 1, 2, 1)
    assert kinds["PodDisruptionBudget"] == 3  # every Deployment has one, the job API's included
    assert rendered.jobs_uris == {"car-classifier-batch": f"https://car-classifier-batch.{DOMAINS[stack]}/jobs"}
    names = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in rendered.objects]
    assert len(names) == len(set(names))


def test_stacks_differ_in_domain_instances_and_isolation() -> None:
    out = {s: render_stack(_settings(s), REPO) for s in STACKS}
    assert {s: r.scoring_uris["car-classifier"] for s, r in out.items()} == {
        "dev": "https://car-classifier.dev.endpoints.example.com/score",
        "staging": "https://car-classifier.staging.endpoints.example.com/score",
        "prod": "https://car-classifier.endpoints.internal.example.com/score",
    }

    def minimum(objects: list[dict], name: str) -> int:
        scaler = [o for o in objects if o["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")]
        for o in scaler:
            if o["metadata"]["name"] == name:
                return o["spec"].get("minReplicas", o["spec"].get("minReplicaCount"))
        return next(
            o["spec"]["replicas"] for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == name
        )

    instances = {
        s: [minimum(r.objects, "car-classifier-alice"), minimum(r.objects, "car-classifier-bob")]
        for s, r in out.items()
    }
    assert instances == {"dev": [1, 1], "staging": [2, 2], "prod": [3, 3]}
    scalers = {
        s: sorted(o["kind"] for o in r.objects if o["kind"] in ("HorizontalPodAutoscaler", "ScaledObject"))
        for s, r in out.items()
    }
    assert scalers == {"dev": [], "staging": ["ScaledObject"], "prod": ["HorizontalPodAutoscaler"]}
    routes = {s: next(o for o in r.objects if o["kind"] == "HTTPRoute") for s, r in out.items()}
    assert routes["prod"]["spec"]["parentRefs"][0]["name"] == "internal"
    assert routes["dev"]["spec"]["parentRefs"][0]["name"] == "public"
    prod_egress = [
        o["metadata"]["name"]
        for o in out["prod"].objects
        if o["kind"] == "NetworkPolicy" and "egress" in o["metadata"]["name"]
    ]
    # One per online deployment (egress_public_network_access disabled in prod), two of the batch endpoint.
    assert sorted(prod_egress) == [
        "car-classifier-alice-egress",
        "car-classifier-batch-jobs-egress",
        "car-classifier-batch-runners-egress",
        "car-classifier-bob-egress",
    ]
    images = {
        s: sorted(
            o["spec"]["template"]["spec"]["containers"][0]["image"]
            for o in r.objects
            if o["kind"] == "Deployment" and "batch" not in o["metadata"]["name"]
        )
        for s, r in out.items()
    }
    assert all("@sha256:" in i for i in images["prod"])
    assert images["dev"] == [
        "registry.example.com/ml-dev/car-classifier-alice:built-by-pulumi",
        "registry.example.com/ml-dev/car-classifier-bob:built-by-pulumi",
    ]


def test_staging_mirrors_bob() -> None:
    rendered = render_stack(_settings("staging"), REPO)
    route = next(o for o in rendered.objects if o["kind"] == "HTTPRoute")
    assert route["spec"]["rules"][-1]["filters"][0]["requestMirror"]["percent"] == 10


def test_override_making_traffic_invalid_is_refused() -> None:
    settings = _settings("dev", overrides={"car-classifier": {"traffic": {"alice": 80}}})
    with pytest.raises(SpecError) as e:
        resolve_stack(settings, REPO)
    assert str(e.value) == (
        "<spec>: ml-endpoints:overrides.car-classifier: the stack's overrides make the spec invalid: : Value error,"
        " traffic: got 80=80; live traffic must sum to 0 or 100"
    )


def test_override_of_unknown_deployment_is_refused() -> None:
    settings = _settings("dev", overrides={"car-classifier": {"deployments": {"carol": {"instanceCount": 2}}}})
    with pytest.raises(SpecError) as e:
        resolve_stack(settings, REPO)
    assert str(e.value) == (
        "<spec>: ml-endpoints:overrides.car-classifier.deployments.carol: no such deployment; known: ['alice', 'bob']"
    )


def test_override_of_unknown_endpoint_is_refused() -> None:
    """Issue 13 item 15: a typo in an endpoint name under overrides used to be ignored silently."""
    settings = _settings("dev", overrides={"car-clasifier": {"deployments": {"alice": {"instanceCount": 2}}}})
    with pytest.raises(SpecError) as e:
        resolve_stack(settings, REPO)
    assert str(e.value) == (
        "<spec>: ml-endpoints:overrides.car-clasifier: no such endpoint in this stack; known: ['car-classifier',"
        " 'car-classifier-batch']"
    )


def test_deployment_without_image_is_refused() -> None:
    settings = _settings("dev", buildImages=False)
    with pytest.raises(SpecError) as e:
        resolve_stack(settings, REPO)
    assert str(e.value) == (
        "<spec>: ml-endpoints:overrides.car-classifier.deployments.alice.image: missing; deployment 'alice' needs a"
        " pinned image in this stack (or set ml-endpoints:buildImages: true)"
    )


def test_image_build_args_for_the_example() -> None:
    resolved = resolve_stack(_settings("dev"), REPO)
    alice = resolved.online[0].deployments[0]
    assert alice.build is not None
    assert alice.build.context == EXAMPLE.resolve()
    assert alice.build.dockerfile == (REPO / "serving" / "Dockerfile.deployment").resolve()
    assert alice.build.repository == "registry.example.com/ml-dev/car-classifier-alice"
    assert alice.build.args == {
        "BASE_IMAGE": "registry.example.com/ml/endpoints-serving:0.1.0",
        "CODE_DIR": "code",
        "SCORING_SCRIPT": "score_alice.py",
        "CONDA_FILE": "environment/conda-alice.yaml",
        "MODEL_PATH": "models/alice",
        "MODEL_NAME": "alice",  # Azure's layout: $AZUREML_MODEL_DIR/alice/...
        "MODEL_DIR": "/var/azureml-app/azureml-models/model/1",
    }


def test_image_paths_outside_the_project_are_refused(tmp_path: Path) -> None:
    project = _copy_example(tmp_path, "vans")
    resolved = resolve_stack(_settings("dev", endpoints=[str(project)], overrides={}), REPO)
    spec = (
        resolved.online[0]
        .deployments[0]
        .spec.model_copy(
            update={
                "code_configuration": resolved.online[0]
                .deployments[0]
                .spec.code_configuration.model_copy(  # type: ignore[union-attr]
                    update={"code": "../../elsewhere"}
                )
            }
        )
    )
    dep_file = project / "deployments" / "alice.yml"
    with pytest.raises(SpecError) as e:
        image_build_args(REPO, project, dep_file, spec, "vans", "base:1")
    assert str(e.value) == (
        f"{dep_file}: code_configuration.code: got '{(tmp_path / 'elsewhere').resolve()}'; it lies outside"
        f" '{project.resolve()}', the image's build context"
    )


def test_two_endpoints_in_one_stack_do_not_collide(tmp_path: Path) -> None:
    other = _copy_example(tmp_path, "vans")
    # The dev stack's overrides name its batch endpoint, which this stack does not deploy: only the online ones.
    overrides = {k: v for k, v in load_stack_config(REPO, "dev")["overrides"].items() if k == "car-classifier"}
    settings = _settings("dev", endpoints=["examples/car-classifier", str(other)], overrides=overrides)
    rendered = render_stack(settings, REPO)
    assert validate_objects(rendered.objects) == []
    names = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in rendered.objects]
    assert len(names) == len(set(names))
    assert sorted(rendered.scoring_uris) == ["car-classifier", "vans"]
    assert sum(1 for o in rendered.objects if o["kind"] == "Deployment") == 4


def test_the_same_endpoint_twice_is_refused() -> None:
    settings = _settings("dev", endpoints=["examples/car-classifier", "examples/car-classifier/endpoint.mirror.yml"])
    with pytest.raises(SpecError) as e:
        resolve_stack(settings, REPO)
    assert str(e.value) == (
        "<spec>: ml-endpoints:endpoints: 'examples/car-classifier/endpoint.mirror.yml' and 'examples/car-classifier'"
        " both define endpoint 'car-classifier'; endpoint names are unique in a stack"
    )


def test_builder_errors_name_the_deployment_file(tmp_path: Path) -> None:
    project = _copy_example(tmp_path, "vans")
    alice = project / "deployments" / "alice.yml"
    alice.write_text(alice.read_text(encoding="utf-8").replace('WORKER_COUNT: "1"', 'ENDPOINTS_AUTH_MODE: "none"'))
    settings = _settings("dev", endpoints=[str(project)], overrides={})
    with pytest.raises(SpecError) as e:
        render_stack(settings, REPO)
    assert str(e.value) == (
        f"{alice}: environment_variables.ENDPOINTS_AUTH_MODE: set by the platform from the spec; change the"
        " corresponding spec field instead"
    )


def _with_image(project: Path, image: str) -> None:
    alice = project / "deployments" / "alice.yml"
    text = alice.read_text(encoding="utf-8")
    assert "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest" in text
    alice.write_text(text.replace("mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest", image), encoding="utf-8")


def test_environment_image_is_built_on_with_the_serving_layer_on_top(tmp_path: Path) -> None:
    project = _copy_example(tmp_path, "vans")
    _with_image(project, "docker.io/library/python:3.12-slim")
    settings = _settings("dev", endpoints=[str(project)], overrides={})
    alice = resolve_stack(settings, REPO).online[0].deployments[0]
    assert alice.build is not None and alice.build.base is not None
    base = alice.build.base
    assert base.dockerfile == (REPO / "serving" / "Dockerfile.custom-base").resolve()
    assert base.context == REPO.resolve()
    assert base.args == {"BASE_IMAGE": "docker.io/library/python:3.12-slim"}
    assert base.repository == "registry.example.com/ml-dev/vans-alice-base"
    # The deployment image is the usual recipe; BASE_IMAGE is the base build's output (components/image_build.py).
    assert alice.build.dockerfile == (REPO / "serving" / "Dockerfile.deployment").resolve()
    assert alice.build.args["BASE_IMAGE"] == "<custom-base>"
    assert alice.build.args["CONDA_FILE"] == "environment/conda-alice.yaml"
    assert render_stack(settings, REPO).notes[0] == (
        "vans/alice: environment.image 'docker.io/library/python:3.12-slim': the deployment image is built on it"
        " (serving layer added; python3 >= 3.11)"
    )


def test_base_image_redirects_for_an_air_gapped_registry(tmp_path: Path) -> None:
    project = _copy_example(tmp_path, "vans")
    _with_image(project, "docker.io/library/python:3.12-slim")
    redirects = {"docker.io/": "registry.internal/hub/", "docker.io/library/": "registry.internal/official/"}
    settings = _settings("dev", endpoints=[str(project)], overrides={}, baseImageRedirects=redirects)
    alice = resolve_stack(settings, REPO).online[0].deployments[0]
    assert alice.build is not None and alice.build.base is not None
    assert alice.build.base.args == {"BASE_IMAGE": "registry.internal/official/python:3.12-slim"}  # longest prefix
    assert render_stack(settings, REPO).notes[0] == (
        "vans/alice: environment.image 'docker.io/library/python:3.12-slim': redirected to"
        " 'registry.internal/official/python:3.12-slim' (ml-endpoints:baseImageRedirects 'docker.io/library/');"
        " the deployment image is built on it"
    )


def test_azure_curated_images_build_on_the_serving_image_unless_redirects_say_otherwise(tmp_path: Path) -> None:
    settings = _settings("dev", overrides={}, endpoints=["examples/car-classifier"])
    alice = resolve_stack(settings, REPO).online[0].deployments[0]
    assert alice.build is not None and alice.build.base is None
    assert alice.build.args["BASE_IMAGE"] == "registry.example.com/ml/endpoints-serving:0.1.0"
    assert render_stack(settings, REPO).notes[0] == (
        "car-classifier/alice: environment.image 'mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest': built"
        " on the stack's serving image instead (ml-endpoints:baseImageRedirects maps 'mcr.microsoft.com/azureml/' to"
        " 'serving')"
    )
    honoured = _settings("dev", overrides={}, endpoints=["examples/car-classifier"], baseImageRedirects={})
    alice = resolve_stack(honoured, REPO).online[0].deployments[0]
    assert alice.build is not None and alice.build.base is not None
    assert alice.build.base.args == {"BASE_IMAGE": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest"}
