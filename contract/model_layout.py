"""Where a deployment's model sits under ``AZUREML_MODEL_DIR``: Azure ML's rule, defined once.

Azure ML copies a registered model into ``AZUREML_MODEL_DIR`` under its own base name: a folder model
``model.path: models`` becomes ``$AZUREML_MODEL_DIR/models/...``, a file model ``model.path: model.pkl`` becomes
``$AZUREML_MODEL_DIR/model.pkl``. Scoring scripts written for Azure open ``AZUREML_MODEL_DIR/<folder>/<file>`` or
glob ``AZUREML_MODEL_DIR/*/*.pkl``, so every place that lays a model out uses this module: the image build
(``serving/Dockerfile.deployment`` gets :func:`model_entry_name` as ``MODEL_NAME``), the init container that
fetches a remote model (``serving.fetch_model``), local mode (``endpoints.local.supervisor``) and the local
batch runner (``endpoints.batchmap``), which both call :func:`stage_local_model`.

This module imports nothing else of the project, so the serving image, the builders and the CLI can all use it.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_ENTRY_NAME = "model"
APP_ROOT = "/var/azureml-app"


def image_model_dir(name: str | None = None, version: str | None = None, mount_path: str | None = None) -> str:
    """``AZUREML_MODEL_DIR`` in a container: ``model_mount_path`` when given, else Azure's
    ``/var/azureml-app/azureml-models/<model name or "model">/<version or 1>``."""
    if mount_path:
        return mount_path
    return f"{APP_ROOT}/azureml-models/{name or 'model'}/{version or '1'}"


def model_entry_name(path_or_uri: str) -> str:
    """The name the model gets inside ``AZUREML_MODEL_DIR``: its base name (``models/alice/`` -> ``alice``).

    A URI's path is used (``s3://bucket/models/alice?sig=...`` -> ``alice``; ``models:/cars/3`` -> ``3``); a path
    with no base name (``/``, ``.``, ``s3://bucket``) gives ``model``.
    """
    path = urlsplit(path_or_uri).path if "://" in path_or_uri or path_or_uri.startswith("models:/") else path_or_uri
    name = os.path.basename(os.path.normpath(path.rstrip("/"))) if path.strip("/") else ""
    return name if name not in ("", ".", "..") else DEFAULT_ENTRY_NAME


def model_location(model_dir: str, path_or_uri: str) -> str:
    """The model's own path once laid out: ``<model_dir>/<model_entry_name(path_or_uri)>``."""
    return f"{model_dir.rstrip('/')}/{model_entry_name(path_or_uri)}"


def stage_local_model(model_path: Path, model_dir: Path) -> Path:
    """Lay a model on this machine out as Azure does, without copying it: ``model_dir`` holds one symbolic link,
    named :func:`model_entry_name`, to ``model_path``. ``model_dir`` is created (owner-only), and emptied of other links
    (a model renamed between runs); it must be a folder owned by the caller (state of local mode or a batch job).

    Args:
        model_path: The model file or folder (must exist).
        model_dir: The folder to export as ``AZUREML_MODEL_DIR``.

    Returns:
        ``model_dir``, absolute.

    Raises:
        FileNotFoundError: ``model_path`` does not exist (the message names it).
    """
    target = model_path.resolve()
    if not target.exists():
        raise FileNotFoundError(f"model.path: got {str(model_path)!r}; no such file or folder")
    model_dir = model_dir.absolute()
    missing = [p for p in (model_dir, *model_dir.parents) if not p.exists()]
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)  # state folders: owner-only, like the rest of the state
    link = model_dir / model_entry_name(str(model_path))
    for old in model_dir.iterdir():
        if old.is_symlink() and old != link:
            old.unlink()
    if link.is_symlink() and os.readlink(link) == str(target):
        return model_dir
    if link.is_symlink():
        link.unlink()
    tmp = model_dir / f".{link.name}.{os.getpid()}.tmp"
    if tmp.is_symlink():
        tmp.unlink()
    tmp.symlink_to(target, target_is_directory=target.is_dir())
    os.replace(tmp, link)  # atomic: a process starting meanwhile sees the old link or the new one
    return model_dir


def find_mlflow_model(model_dir: str, depth: int = 2) -> str | None:
    """Return the folder holding ``MLmodel`` under ``model_dir`` (itself first, then sub-folders in name order).

    Args:
        model_dir: the model folder (``AZUREML_MODEL_DIR``); empty -> None.
        depth: how many folder levels below ``model_dir`` to look (default 2).
    """
    if not model_dir or not os.path.isdir(model_dir):
        return None
    if os.path.isfile(os.path.join(model_dir, "MLmodel")):
        return model_dir
    if depth == 0:
        return None
    for name in sorted(os.listdir(model_dir)):
        child = os.path.join(model_dir, name)
        if os.path.isdir(child) and not name.startswith("."):
            found = find_mlflow_model(child, depth - 1)
            if found is not None:
                return found
    return None
