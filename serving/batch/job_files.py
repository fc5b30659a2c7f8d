"""A batch job's files over the job API: its output folder (download) and its runners' logs.

Routes (added to :func:`serving.batch.api.build_app`, behind the same auth):

* ``GET /jobs/{id}/outputs`` -> ``{"job": id, "files": [{"name": "predictions.csv", "size": 123}, ...]}``: the
  regular files of the job's output folder (hidden entries, e.g. the runner's checkpoint folder, left out).
* ``GET /jobs/{id}/outputs/{name}`` -> that file's bytes; ``name`` is one listed above (no ``..``, no hidden part).
* ``GET /jobs/{id}/logs?tail=N`` -> ``{"job": id, "logs": {"<instance or pod>": "<text>"}}``: the last ``N``
  lines (default and at most :data:`MAX_LOG_LINES`) of each runner's log, from the launcher.

Errors are ``{"error": ...}``: 400 bad name or tail, 404 unknown job or file, 501 a launcher without logs.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from serving.batch.launchers import JobNotFoundError, Launcher

MAX_OUTPUT_FILES = 10_000
MAX_LOG_LINES = 10_000


class OutputNameError(ValueError):
    """A file name outside the job's output folder, hidden, or not a regular file."""


def list_outputs(output_dir: str | Path) -> list[dict[str, Any]]:
    """Regular files under ``output_dir`` (relative POSIX names, sorted), hidden entries skipped; at most
    :data:`MAX_OUTPUT_FILES`. A folder that does not exist yet (a queued job) lists as empty."""
    root = Path(output_dir)
    files: list[dict[str, Any]] = []
    if not root.is_dir():
        return files
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            path = Path(folder) / name
            if name.startswith(".") or path.is_symlink() or not path.is_file():
                continue
            files.append({"name": path.relative_to(root).as_posix(), "size": path.stat().st_size})
            if len(files) >= MAX_OUTPUT_FILES:
                return files
    return files


def output_file(output_dir: str | Path, name: str) -> Path:
    """The file ``name`` inside ``output_dir``.

    Raises:
        OutputNameError: absolute, ``..``, hidden parts, a symlink, or resolving outside the folder.
        FileNotFoundError: no such regular file.
    """
    parts = Path(name).parts
    if not name or Path(name).is_absolute() or any(p in ("..", ".") or p.startswith(".") for p in parts):
        raise OutputNameError(f"file: got {name!r}; name a file listed by GET /jobs/<id>/outputs")
    root = Path(output_dir).resolve()
    path = root / name
    if path.is_symlink() or not path.resolve().is_relative_to(root):
        raise OutputNameError(f"file: got {name!r}; it leads outside the job's output folder")
    if not path.is_file():
        raise FileNotFoundError(name)
    return path


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def routes(launcher: Launcher) -> list[Route]:
    """The three routes above, over ``launcher``'s jobs."""

    async def job_output(job_id: str) -> str:
        info = await asyncio.to_thread(launcher.get, job_id)
        return info.output

    async def outputs(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        try:
            folder = await job_output(job_id)
        except JobNotFoundError as e:
            return _error(404, str(e))
        return JSONResponse({"job": job_id, "files": await asyncio.to_thread(list_outputs, folder)})

    async def one_output(request: Request) -> Response:
        job_id, name = request.path_params["job_id"], request.path_params["name"]
        try:
            path = output_file(await job_output(job_id), name)
        except JobNotFoundError as e:
            return _error(404, str(e))
        except OutputNameError as e:
            return _error(400, str(e))
        except FileNotFoundError:
            return _error(404, f"batch job {job_id!r} has no output file {name!r}")
        return FileResponse(path, filename=path.name)

    async def logs(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        raw = request.query_params.get("tail", str(MAX_LOG_LINES))
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_LOG_LINES:
            return _error(400, f"tail: got {raw!r}; a number of lines from 1 to {MAX_LOG_LINES}")
        read = getattr(launcher, "logs", None)
        if read is None:
            return _error(501, "this job API's launcher keeps no logs")
        try:
            texts = await asyncio.to_thread(read, job_id, int(raw))
        except JobNotFoundError as e:
            return _error(404, str(e))
        return JSONResponse({"job": job_id, "logs": texts})

    return [
        Route("/jobs/{job_id}/outputs", outputs, methods=["GET"]),
        Route("/jobs/{job_id}/outputs/{name:path}", one_output, methods=["GET"]),
        Route("/jobs/{job_id}/logs", logs, methods=["GET"]),
    ]
