"""Batch endpoints in a stack: resolution, images, queues, instance types, name clashes (pure: no Pulumi engine)."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from components.builders.stack import check_names, render_stack
from components.builders.stack_config import load_stack_config, settings_from_config
from components.builders.stack_resolve import RUNNER_IMAGE_PLACEHOLDER, resolve_stack
from components.k8s_schema import validate_objects
from endpoints.errors import SpecError
from endpoints.images import batch_image_build, deployment_image_build

REPO = Path(__file__).resolve().parents[2]
ONLINE = REPO / "examples" / "car-classifier"
BATCH = REPO / "examples" / "car-classifier-batch"
NIGHTLY = "registry.example.com/ml/car-classifier-batch-nightly@sha256:" + "ef" * 32


def _settings(stack: str, **extra: object):
    values = load_stack_config(REPO, stack)
    values.update(extra)
    return settings_from_config(values, stack)


def _objects(rendered, kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in rendered.objects if o["kind"] == kind}


def _template(rendered) -> dict:
    cm = _objects(rendered, "ConfigMap")["car-classifier-batch-nightly-batch-template"]
    return json.loads(cm["data"]["nightly.json"])


def _copy_pair(tmp_path: Path, batch_name: str) -> Path:
    """The batch example beside a copy of the online one (its model and environment paths stay valid)."""
    shutil.copytree(ONLINE, tmp_path / "car-classifier", ignore=shutil.ignore_patterns("samples", "__pycache__"))
    dest = tmp_path / "batch"
    shutil.copytree(BATCH, dest, ignore=shutil.ignore_patterns("__pycache__"))
    for path in [dest / "endpoint.yml", *(dest / "deployments").glob("*.yml")]:
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace("car-classifier-batch", batch_name), encoding="utf-8")
    return dest


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_each_stack_renders_the_batch_endpoint(stack: str) -> None:
    rendered = render_stack(_settings(stack), REPO)
    assert validate_objects(rendered.objects) == []
    template = _template(rendered)
    assert validate_objects([template]) == []
    pod = template["spec"]["template"]["spec"]
    # compute: azureml:cpu and no instance_type: the stack's default batch instance type, pinned to its pool.
    assert pod["containers"][0]["resources"]["requests"] == {
        "cpu": "3400m",
        "memory": "12185Mi",
        "ephemeral-storage": "1Gi",
    }
    assert pod["nodeSelector"] == {"ml-endpoints.io/pool": "cpu"}
    assert template["spec"]["parallelism"] == {"dev": 1, "staging": 2, "prod": 4}[stack]
    assert template["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "car-classifier-batch-batch"
    queue = _objects(rendered, "LocalQueue")["car-classifier-batch-batch"]
    assert queue["spec"] == {"clusterQueue": f"ml-{stack}-batch"}
    route = _objects(rendered, "HTTPRoute")["car-classifier-batch"]
    assert route["spec"]["parentRefs"][0]["name"] == {"dev": "public", "staging": "public", "prod": "internal"}[stack]
    pdb = _objects(rendered, "PodDisruptionBudget")["car-classifier-batch-jobs"]
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"] == _objects(rendered, "Deployment")["car-classifier-batch-jobs"]["spec"]["selector"]
    ingress = _objects(rendered, "NetworkPolicy")["car-classifier-batch-jobs-ingress"]
    assert ingress["spec"]["ingress"][0]["from"][0] == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateway-system"}}
    }


def test_cluster_objects_are_created_once_per_stack(tmp_path: Path) -> None:
    second = _copy_pair(tmp_path, "vans-batch")
    settings = _settings("dev", endpoints=["examples/car-classifier", "examples/car-classifier-batch", str(second)])
    rendered = render_stack(settings, REPO)
    assert validate_objects(rendered.objects) == []
    kinds = Counter(o["kind"] for o in rendered.objects)
    assert (kinds["ClusterQueue"], kinds["ResourceFlavor"], kinds["PriorityClass"]) == (1, 1, 2)
    assert kinds["PersistentVolumeClaim"] == 1  # one shared claim, not one per endpoint
    assert sorted(_objects(rendered, "LocalQueue")) == ["car-classifier-batch-batch", "vans-batch-batch"]
    assert sorted(rendered.jobs_uris) == ["car-classifier-batch", "vans-batch"]
    names = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in rendered.objects]
    assert len(names) == len(set(names))
    # The default quota has room for the largest job of the pool: vans-batch's two instances of Standard_DS3_v2.
    queue = _objects(rendered, "ClusterQueue")["ml-dev-batch"]
    assert queue["spec"]["resourceGroups"] == [
        {
            "coveredResources": ["cpu", "memory"],
            "flavors": [
                {
                    "name": "ml-dev-cpu",
                    "resources": [
                        {"name": "cpu", "nominalQuota": "6800m"},
                        {"name": "memory", "nominalQuota": "24370Mi"},
                    ],
                }
            ],
        }
    ]
    assert queue["spec"]["namespaceSelector"]["matchExpressions"][0]["values"] == ["ml-dev"]
    assert _objects(rendered, "ResourceFlavor")["ml-dev-cpu"]["spec"] == {"nodeLabels": {"ml-endpoints.io/pool": "cpu"}}


def test_priority_classes_can_be_left_to_another_stack() -> None:
    rendered = render_stack(_settings("staging", createPriorityClasses=False), REPO)
    assert "PriorityClass" not in Counter(o["kind"] for o in rendered.objects)
    assert _template(rendered)["spec"]["template"]["spec"]["priorityClassName"] == "ml-endpoints-batch"


def test_online_and_batch_endpoints_with_the_same_name_are_refused(tmp_path: Path) -> None:
    batch = _copy_pair(tmp_path, "car-classifier")
    settings = _settings("dev", endpoints=["examples/car-classifier", str(batch)], overrides={})
    with pytest.raises(SpecError) as e:
        resolve_stack(settings, REPO)
    assert str(e.value) == (
        f"<spec>: ml-endpoints:endpoints: {str(batch)!r} (batch endpoint) and 'examples/car-classifier' (online"
        " endpoint) both define endpoint 'car-classifier'; an online and a batch endpoint cannot share a name in a"
        " stack (both would be served at car-classifier.dev.endpoints.example.com): rename one"
    )


def test_online_and_batch_objects_never_share_a_name(tmp_path: Path) -> None:
    """Online deployment ``batch-jobs`` of ``car-classifier`` would be Deployment ``car-classifier-batch-jobs``: the
    job API of batch endpoint ``car-classifier-batch``."""
    online = tmp_path / "online"
    shutil.copytree(ONLINE, online, ignore=shutil.ignore_patterns("samples", "__pycache__"))
    bob = (online / "deployments" / "bob.yml").read_text(encoding="utf-8")
    (online / "deployments" / "batch-jobs.yml").write_text(bob.replace("name: bob", "name: batch-jobs"), "utf-8")
    settings = _settings("dev", endpoints=[str(online), "examples/car-classifier-batch"])
    resolved = resolve_stack(settings, REPO)
    # The program's check (stacks/__main__.py calls it before creating anything) and the offline plan's alike.
    for refuse in (lambda: check_names(settings, resolved), lambda: render_stack(settings, REPO)):
        with pytest.raises(SpecError) as e:
            refuse()
        assert str(e.value) == (
            "<spec>: ml-endpoints:endpoints: Deployment ml-dev/car-classifier-batch-jobs would be created by both"
            f" online endpoint 'car-classifier' ({online}) and batch endpoint 'car-classifier-batch'"
            " (examples/car-classifier-batch); rename one of the endpoints or deployments"
        )


def test_dev_builds_the_batch_images_from_the_shared_recipes() -> None:
    resolved = resolve_stack(_settings("dev"), REPO)
    serving = "registry.example.com/ml/endpoints-serving:0.1.0"
    api, runner = resolved.job_api_build, resolved.runner_build
    assert api is not None and runner is not None
    for build, target in ((api, "job-api"), (runner, "runner")):
        recipe = batch_image_build(target, serving, REPO)  # the one source of truth (tests/images build it)
        assert (build.dockerfile, build.context, build.target) == (
            recipe.dockerfile.resolve(),
            recipe.context.resolve(),
            target,
        )
        assert build.args == {"BASE_IMAGE": serving} == recipe.args
    assert api.repository == "registry.example.com/ml-dev/endpoints-batch-job-api"
    assert runner.repository == "registry.example.com/ml-dev/endpoints-batch-runner"
    nightly = resolved.batch[0].deployments[0]
    assert nightly.image is None and nightly.build is not None
    recipe = deployment_image_build(
        nightly.spec,
        nightly.deployment_file,
        RUNNER_IMAGE_PLACEHOLDER,
        model_dir="/var/azureml-app/azureml-models/car-classifier-alice/1",
    )
    assert recipe is not None
    assert (
        nightly.build.args
        == recipe.args
        == {
            "BASE_IMAGE": RUNNER_IMAGE_PLACEHOLDER,
            "CODE_DIR": "car-classifier/code",  # the online example's code folder, one copy of features.py
            "SCORING_SCRIPT": "score_batch.py",
            "CONDA_FILE": "car-classifier/environment/conda-alice.yaml",
            "MODEL_PATH": "car-classifier/models/alice",  # reused from the online example, not copied
            "MODEL_NAME": "alice",
            "MODEL_DIR": "/var/azureml-app/azureml-models/car-classifier-alice/1",
        }
    )
    assert nightly.build.context == (REPO / "examples").resolve()
    assert nightly.build.dockerfile == (REPO / "serving" / "Dockerfile.deployment").resolve()
    rendered = render_stack(_settings("dev"), REPO)
    api_pod = _objects(rendered, "Deployment")["car-classifier-batch-jobs"]["spec"]["template"]["spec"]
    assert api_pod["containers"][0]["image"] == "registry.example.com/ml-dev/endpoints-batch-job-api:built-by-pulumi"
    settings = json.loads(_template(rendered)["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"])
    assert settings["model_dir"] == recipe.args["MODEL_DIR"]
    assert settings["entry_script"] == "/var/azureml-app/score_batch.py"


def test_pinned_stacks_build_nothing() -> None:
    resolved = resolve_stack(_settings("prod"), REPO)
    assert (resolved.job_api_build, resolved.runner_build, resolved.runner_image) == (None, None, None)
    assert resolved.job_api_image is not None and "@sha256:" in resolved.job_api_image
    assert all(d.build is None and "@sha256:" in (d.image or "") for d in resolved.batch[0].deployments)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        pytest.param(
            {"jobApiImage": ""},
            "<spec>: ml-endpoints:jobApiImage: missing; the stack's batch endpoints need a pinned image (or set"
            " ml-endpoints:buildImages: true)",
            id="no-job-api-image",
        ),
        pytest.param(
            {"overrides": {"car-classifier-batch": {"deployments": {"nightly": {}}}}},
            "<spec>: ml-endpoints:overrides.car-classifier-batch.deployments.nightly.image: missing; batch deployment"
            " 'nightly' needs a pinned image in this stack (or set ml-endpoints:buildImages: true)",
            id="no-deployment-image",
        ),
        pytest.param(
            {"overrides": {"car-classifier-batch": {"traffic": {"nightly": 100}}}},
            "<spec>: ml-endpoints:overrides.car-classifier-batch.traffic: got {'nightly': 100}; 'car-classifier-batch'"
            " is a batch endpoint (each job names its deployment, else the endpoint's defaults.deployment_name)",
            id="traffic-on-batch",
        ),
        pytest.param(
            {"overrides": {"car-classifier": {"jobApiReplicas": 3}}},
            "<spec>: ml-endpoints:overrides.car-classifier.jobApiReplicas: got 3; 'car-classifier' is an online"
            " endpoint (set instanceCount or autoscale of its deployments)",
            id="job-api-replicas-on-online",
        ),
        pytest.param(
            {
                "overrides": {
                    "car-classifier-batch": {
                        "deployments": {
                            "nightly": {"image": NIGHTLY, "autoscale": {"minInstances": 2, "maxInstances": 4}}
                        }
                    }
                }
            },
            "<spec>: ml-endpoints:overrides.car-classifier-batch.deployments.nightly.autoscale: got"
            " Autoscale(min_instances=2, max_instances=4, target_utilization_percentage=70, polling_interval=1);"
            " batch deployments take no autoscale (online only)",
            id="autoscale-on-batch",
        ),
        pytest.param(
            {"batchInstanceType": "gpu-1"},
            "<spec>: {batch}/deployments/nightly.yml: compute: got 'azureml:cpu', but the default batch instance"
            " type 'gpu-1' runs in pool 'gpu'; set instance_type to a type of pool 'cpu' (or the stack's"
            " overrides.<endpoint>.deployments.<name>.instanceType)",
            id="default-type-of-another-pool",
        ),
        pytest.param(
            {"batchQuotas": {"cpu": {"cpu": "8", "memory": "64Gi"}}},
            "<spec>: ml-endpoints:batchQuotas.cpu.cpu: got '8'; one job of batch deployment"
            " car-classifier-batch/nightly needs 13600m (4 x Standard_DS3_v2) and would wait in the queue forever",
            id="quota-below-one-job",
        ),
        pytest.param(
            {"batchQuotas": {"gpu-t4": {"cpu": "8"}}},
            "<spec>: ml-endpoints:batchQuotas.gpu-t4: no batch deployment of this stack runs in pool 'gpu-t4';"
            " pools: ['cpu']",
            id="quota-of-an-unused-pool",
        ),
        pytest.param(
            {"batchQuotas": {"cpu": {"cpu": "lots"}}},
            "<spec>: ml-endpoints:batchQuotas.cpu.cpu: got 'lots'; expected a Kubernetes quantity such as 16, 500m,"
            " 64Gi",
            id="quota-not-a-quantity",
        ),
    ],
)
def test_bad_batch_configuration_is_refused(extra: dict, message: str) -> None:
    if "overrides" in extra:  # the stack's other overrides stay
        extra = {"overrides": {**load_stack_config(REPO, "prod")["overrides"], **extra["overrides"]}}
    settings = _settings("prod", **extra)
    with pytest.raises(SpecError) as e:
        resolve_stack(settings, REPO)
    assert str(e.value) == message.replace("{batch}", str(BATCH))


def test_instance_type_default_and_overrides() -> None:
    large = resolve_stack(_settings("prod", batchInstanceType="cpu-large"), REPO)
    assert large.batch[0].deployments[0].instance.name == "cpu-large"
    overrides = load_stack_config(REPO, "prod")["overrides"]
    overrides["car-classifier-batch"]["deployments"]["nightly"]["instanceType"] = "Standard_NC4as_T4_v3"
    rendered = render_stack(_settings("prod", overrides=overrides, batchQuotas={}), REPO)
    assert validate_objects(rendered.objects) == []
    pod = _template(rendered)["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"ml-endpoints.io/pool": "gpu-t4"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    # The GPU pool gets a flavor carrying its taint toleration and a GPU quota for four instances.
    flavor = _objects(rendered, "ResourceFlavor")["ml-prod-gpu-t4"]
    assert flavor["spec"]["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    queue = _objects(rendered, "ClusterQueue")["ml-prod-batch"]
    [group] = queue["spec"]["resourceGroups"]
    assert group["coveredResources"] == ["cpu", "memory", "nvidia.com/gpu"]
    assert group["flavors"] == [
        {
            "name": "ml-prod-gpu-t4",
            "resources": [
                {"name": "cpu", "nominalQuota": "13600m"},
                {"name": "memory", "nominalQuota": "97484Mi"},
                {"name": "nvidia.com/gpu", "nominalQuota": "4"},
            ],
        },
    ]
    assert sorted(_objects(rendered, "ResourceQuota")) == ["gpu-t4-gpu-quota"]


def test_job_api_replicas_from_stack_and_endpoint() -> None:
    def replicas(**extra: object) -> int:
        rendered = render_stack(_settings("staging", **extra), REPO)
        return int(_objects(rendered, "Deployment")["car-classifier-batch-jobs"]["spec"]["replicas"])

    assert replicas() == 2
    assert replicas(batchJobApiReplicas=4) == 4
    overrides = load_stack_config(REPO, "staging")["overrides"]
    overrides["car-classifier-batch"]["jobApiReplicas"] = 5
    assert replicas(batchJobApiReplicas=4, overrides=overrides) == 5


def test_a_changed_template_rolls_the_job_api() -> None:
    def api_and_template(**extra: object) -> tuple[dict, dict]:
        rendered = render_stack(_settings("staging", **extra), REPO)
        return _objects(rendered, "Deployment")["car-classifier-batch-jobs"], _template(rendered)

    api, _ = api_and_template()
    overrides = load_stack_config(REPO, "staging")["overrides"]
    overrides["car-classifier-batch"]["deployments"]["nightly"]["image"] = NIGHTLY
    new_api, new_template = api_and_template(overrides=overrides)
    assert new_template["spec"]["template"]["spec"]["containers"][0]["image"] == NIGHTLY
    annotation = "ml-endpoints.io/templates-hash"
    old_hash = api["spec"]["template"]["metadata"]["annotations"][annotation]
    new_hash = new_api["spec"]["template"]["metadata"]["annotations"][annotation]
    assert len(old_hash) == 16 and old_hash != new_hash
    del api["spec"]["template"]["metadata"]["annotations"], new_api["spec"]["template"]["metadata"]["annotations"]
    assert api == new_api  # nothing else of the job API changes


def _with_batch_image(tmp_path: Path, image: str) -> Path:
    """The batch example (beside a copy of the online one) with ``environment.image`` set to ``image``."""
    batch = _copy_pair(tmp_path, "vans-batch")
    nightly = batch / "deployments" / "nightly.yml"
    text = nightly.read_text(encoding="utf-8")
    nightly.write_text(text.replace("mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest", image), "utf-8")
    return batch


def test_batch_environment_image_builds_the_runner_on_it(tmp_path: Path) -> None:
    """serving layer on the user's image -> the runner target on that -> the deployment image on the runner, each
    build the base of the next (components/image_build.py builds them in that order)."""
    batch = _with_batch_image(tmp_path, "docker.io/library/python:3.12-slim")
    settings = _settings("dev", endpoints=[str(batch)], overrides={})
    resolved = resolve_stack(settings, REPO)
    [nightly] = resolved.batch[0].deployments
    build = nightly.build
    assert build is not None and build.base is not None and build.base.base is not None
    runner, layer = build.base, build.base.base
    assert layer.base is None
    assert (layer.dockerfile, layer.context, layer.target) == (
        (REPO / "serving" / "Dockerfile.custom-base").resolve(),
        REPO.resolve(),
        None,
    )
    assert layer.args == {"BASE_IMAGE": "docker.io/library/python:3.12-slim"}
    assert layer.repository == "registry.example.com/ml-dev/vans-batch-nightly-base"
    assert (runner.dockerfile, runner.context, runner.target) == (
        (REPO / "serving" / "Dockerfile.batch").resolve(),
        REPO.resolve(),
        "runner",
    )
    assert runner.args == {"BASE_IMAGE": "<custom-base>"}  # replaced by the layer's digest
    assert runner.repository == "registry.example.com/ml-dev/vans-batch-nightly-runner"
    assert build.dockerfile == (REPO / "serving" / "Dockerfile.deployment").resolve()
    assert build.args == {
        "BASE_IMAGE": "<custom-runner>",  # replaced by the runner's digest
        "CODE_DIR": "car-classifier/code",
        "SCORING_SCRIPT": "score_batch.py",
        "CONDA_FILE": "car-classifier/environment/conda-alice.yaml",
        "MODEL_PATH": "car-classifier/models/alice",
        "MODEL_NAME": "alice",
        "MODEL_DIR": "/var/azureml-app/azureml-models/car-classifier-alice/1",
    }
    assert build.repository == "registry.example.com/ml-dev/vans-batch-nightly"
    # No deployment builds on the stack's runner image: it is not built.
    assert (resolved.runner_build, resolved.runner_image) == (None, None)
    assert resolved.job_api_build is not None
    rendered = render_stack(settings, REPO)
    assert validate_objects(rendered.objects) == []
    cm = _objects(rendered, "ConfigMap")["vans-batch-nightly-batch-template"]
    pod = json.loads(cm["data"]["nightly.json"])["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry.example.com/ml-dev/vans-batch-nightly:built-by-pulumi"
    assert rendered.notes == [
        "vans-batch/nightly: environment.image 'docker.io/library/python:3.12-slim': the batch runner and the"
        " deployment image are built on it (serving layer added; python3 >= 3.11)"
    ]


def test_batch_environment_image_redirects() -> None:
    # The example names Azure's curated image: redirected to `serving` by default, the stack's runner as before.
    settings = _settings("dev", endpoints=["examples/car-classifier-batch"], overrides={})
    resolved = resolve_stack(settings, REPO)
    [nightly] = resolved.batch[0].deployments
    assert nightly.build is not None and nightly.build.base is None
    assert nightly.build.args["BASE_IMAGE"] == RUNNER_IMAGE_PLACEHOLDER
    assert resolved.runner_build is not None
    assert render_stack(settings, REPO).notes == [
        "car-classifier-batch/nightly: environment.image 'mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest':"
        " built on the stack's batch runner image instead (ml-endpoints:baseImageRedirects maps"
        " 'mcr.microsoft.com/azureml/' to 'serving')"
    ]
    mirror = {"mcr.microsoft.com/": "registry.internal/mcr/"}
    settings = _settings("dev", endpoints=["examples/car-classifier-batch"], overrides={}, baseImageRedirects=mirror)
    resolved = resolve_stack(settings, REPO)
    [nightly] = resolved.batch[0].deployments
    assert nightly.build is not None and nightly.build.base is not None and nightly.build.base.base is not None
    assert nightly.build.base.base.args == {
        "BASE_IMAGE": "registry.internal/mcr/azureml/openmpi4.1.0-ubuntu20.04:latest"
    }
    assert resolved.runner_build is None
    assert render_stack(settings, REPO).notes == [
        "car-classifier-batch/nightly: environment.image 'mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest':"
        " redirected to 'registry.internal/mcr/azureml/openmpi4.1.0-ubuntu20.04:latest'"
        " (ml-endpoints:baseImageRedirects 'mcr.microsoft.com/'); the batch runner and the deployment image are"
        " built on it"
    ]


def test_a_pinned_batch_image_wins_over_environment_image(tmp_path: Path) -> None:
    batch = _with_batch_image(tmp_path, "docker.io/library/python:3.12-slim")
    pinned = {"vans-batch": {"deployments": {"nightly": {"image": NIGHTLY}}}}
    settings = _settings("dev", endpoints=[str(batch)], overrides=pinned)
    resolved = resolve_stack(settings, REPO)
    [nightly] = resolved.batch[0].deployments
    assert (nightly.image, nightly.build) == (NIGHTLY, None)
    assert render_stack(settings, REPO).notes == []


def test_offline_plan_notes_the_batch_base_image(tmp_path: Path) -> None:
    """``endpoints plan --stack S`` (the CLI) prints what the stack does with a batch deployment's image."""
    from typer.testing import CliRunner

    from endpoints.cli.main import build_app

    root = tmp_path / "project"
    (root / "stacks").mkdir(parents=True)
    shutil.copy(REPO / "Pulumi.yaml", root / "Pulumi.yaml")
    batch = _with_batch_image(root, "docker.io/library/python:3.12-slim")
    (root / "stacks" / "Pulumi.dev.yaml").write_text(
        "config:\n"
        "  ml-endpoints:namespace: ml-dev\n"
        f"  ml-endpoints:endpoints: [{batch.name}]\n"
        "  ml-endpoints:buildImages: true\n"
        "  ml-endpoints:servingImage: registry.example.com/ml/endpoints-serving:0.1.0\n"
        "  ml-endpoints:baseImageRedirects: {'docker.io/': 'registry.internal/hub/'}\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(build_app(), ["plan", "--stack", "dev", "--project", str(root)])
    assert result.exit_code == 0, result.output
    assert (
        "note: vans-batch/nightly: environment.image 'docker.io/library/python:3.12-slim': redirected to"
        " 'registry.internal/hub/library/python:3.12-slim' (ml-endpoints:baseImageRedirects 'docker.io/'); the batch"
        " runner and the deployment image are built on it"
    ) in " ".join(result.output.split())
