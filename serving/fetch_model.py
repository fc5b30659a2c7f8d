"""Download a deployment's model before the server starts (the init container of an online deployment).

``python -m serving.fetch_model --uri URI --dest DIR`` copies the model file or folder at ``URI`` to
``DIR/<its base name>``, as Azure ML lays models out under ``AZUREML_MODEL_DIR``. ``URI`` is anything fsspec
opens (``file://``, ``https://``, ``s3://`` with s3fs, ``az://``/``abfs://`` with adlfs, ``gs://`` with gcsfs)
or an MLflow ``models:/name/version`` URI (needs mlflow in the image). The copy lands in a temporary folder and is
renamed into place, so a restarted init container never sees half a model; an existing copy is kept.
Credentials come from the pod's environment (workload identity, IRSA, ...), never from the command line.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from contract.model_layout import model_entry_name


class FetchError(RuntimeError):
    """The model could not be fetched; the message names the (redacted) URI and the cause."""


def redact(uri: str) -> str:
    """The URI without user info, query or fragment (SAS tokens and signatures live there)."""
    parts = urlsplit(uri)
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def fetch_model(uri: str, dest: Path) -> Path:
    """Copy the model at ``uri`` into ``dest/<base name>`` (kept as is when it is already there).

    Returns:
        The model's path inside ``dest``.

    Raises:
        FetchError: the URI cannot be opened or copied; the message holds the redacted URI.
    """
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / model_entry_name(uri)
    if target.exists():
        return target
    staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=dest))
    try:
        if uri.startswith("models:/"):
            try:
                import mlflow.artifacts
            except ImportError as e:
                raise FetchError(f"{uri}: models:/ URIs need mlflow in the image; add it to the conda file") from e
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(staging)))
        else:
            import fsspec

            try:
                fs, path = fsspec.core.url_to_fs(uri)
            except (ImportError, ValueError) as e:
                raise FetchError(f"{redact(uri)}: no filesystem for this scheme in the image ({e})") from e
            try:
                local = staging / target.name
                # HTTP has no folders (an HTML page would read as a listing): a URL names one file.
                http = uri.startswith(("http://", "https://"))
                if not http and fs.isdir(path):
                    fs.get(path.rstrip("/") + "/", str(local) + "/", recursive=True)
                else:
                    fs.get_file(path, str(local))  # get() would read '?' in a signed URL as a glob
            except (OSError, ValueError) as e:
                raise FetchError(f"{redact(uri)}: cannot copy the model: {type(e).__name__}") from e
        if not local.exists():
            raise FetchError(f"{redact(uri)}: nothing was downloaded")
        local.rename(target)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status (0 fetched or present, 1 failed)."""
    parser = argparse.ArgumentParser(prog="python -m serving.fetch_model", description=__doc__.splitlines()[0])
    parser.add_argument("--uri", required=True, help="Model URI (fsspec URL or models:/name/version).")
    parser.add_argument("--dest", required=True, type=Path, help="AZUREML_MODEL_DIR of the deployment.")
    args = parser.parse_args(argv)
    try:
        path = fetch_model(args.uri, args.dest)
    except FetchError as e:
        print(f"fetch_model: {e}", file=sys.stderr)
        return 1
    print(f"fetch_model: {redact(args.uri)} -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
