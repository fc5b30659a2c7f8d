"""``endpoints serve``: run the inference server on this machine (the same process as ``python -m serving``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def serve(
    entry_script: Annotated[
        Path | None,
        typer.Option("--entry-script", help="Scoring script with init() and run(); omit to serve an MLflow model."),
    ] = None,
    model_dir: Annotated[
        Path | None,
        typer.Option(
            "--model-dir",
            help="Exported as is as AZUREML_MODEL_DIR (absolute). Azure puts a model under its own name in that"
            " folder (model.path models/alice -> $AZUREML_MODEL_DIR/alice/...), and so do `endpoints local up` and"
            " the images: to match, give the folder that holds the model folder, not the model folder itself.",
        ),
    ] = None,
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port; 0 picks a free one.")] = 5001,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="Worker processes (default: WORKER_COUNT or 1).")
    ] = None,
) -> None:
    """Serve an Azure ML scoring script or an MLflow model over HTTP until Ctrl-C or SIGTERM."""
    if entry_script is not None and not entry_script.is_file():
        raise typer.BadParameter(f"{entry_script}: no such file", param_hint="--entry-script")
    if model_dir is not None and not model_dir.is_dir():
        raise typer.BadParameter(f"{model_dir}: no such folder", param_hint="--model-dir")
    if entry_script is None and model_dir is None:
        raise typer.BadParameter("give --entry-script, or --model-dir holding an MLflow model (MLmodel file)")
    from serving.server.cli import main

    argv = ["--port", str(port), "--host", host]
    if entry_script is not None:
        argv += ["--entry-script", str(entry_script)]
    if model_dir is not None:
        argv += ["--model-dir", str(model_dir)]
    if workers is not None:
        argv += ["--workers", str(workers)]
    code = main(argv)
    if code != 0:
        raise typer.Exit(code=code)


def register(app: typer.Typer) -> None:
    """Add ``endpoints serve`` to the CLI."""
    app.command("serve")(serve)
