"""Azure's model layout in local batch runs: the model folder keeps its name under AZUREML_MODEL_DIR.

The real runner (started by ``endpoints batch invoke`` on a folder) runs a scoring script written for Azure: it
opens ``AZUREML_MODEL_DIR/<folder>/<file>`` and globs ``AZUREML_MODEL_DIR/*/*.txt``.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from batch_helpers import make_inputs
from typer.testing import CliRunner

from endpoints.cli.main import build_app

SCORE = textwrap.dedent(
    """
    import glob, os

    def init():
        global offset, found
        base = os.environ["AZUREML_MODEL_DIR"]
        with open(os.path.join(base, "weights", "offset.txt")) as f:
            offset = int(f.read())
        found = "|".join(sorted(os.path.relpath(p, base) for p in glob.glob(os.path.join(base, "*", "*.txt"))))

    def run(mini_batch):
        return [f"{os.path.basename(p)},{int(open(p).read()) + offset},{found}" for p in mini_batch]
    """
)


def test_batch_local_run_lays_the_model_out_as_azure(tmp_path: Path):
    root = tmp_path / "proj"
    (root / "deployments").mkdir(parents=True)
    (root / "code").mkdir()
    (root / "weights").mkdir()
    (root / "weights" / "offset.txt").write_text("1000")
    (root / "weights" / "notes.txt").write_text("n")
    (root / "code" / "score.py").write_text(SCORE)
    (root / "endpoint.yml").write_text("name: layout-batch\nauth_mode: key\ndefaults:\n  deployment_name: one\n")
    (root / "deployments" / "one.yml").write_text(
        "name: one\nendpoint_name: layout-batch\ntype: model\nmodel:\n  path: ../weights\n"
        "code_configuration:\n  code: ../code\n  scoring_script: score.py\ncompute: azureml:cpu-cluster\n"
        "settings:\n  mini_batch_size: 2\n  output_action: append_row\n"
    )
    make_inputs(tmp_path / "in", 3)
    result = CliRunner().invoke(
        build_app(),
        [
            "batch",
            "invoke",
            str(root),
            "--input",
            str(tmp_path / "in"),
            "--wait",
            "--json",
            "--state-dir",
            str(tmp_path / "state"),
            "--job-id",
            "layout-1",
        ],
    )
    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)
    assert job["status"] == "Completed", job
    rows = sorted((Path(job["output"]) / "predictions.csv").read_text().splitlines())
    found = "weights/notes.txt|weights/offset.txt"
    assert rows == [f"{i:05d}-f{i:05d}.txt,{1000 + i},{found}" for i in range(3)]
