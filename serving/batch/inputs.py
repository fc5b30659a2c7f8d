"""A batch job's input: the files a file, folder or glob names (local or an fsspec URI), and their mini-batches."""

from __future__ import annotations

import os


class InputError(ValueError):
    """The input names no files or cannot be listed."""


def list_inputs(uri: str) -> list[str]:
    """Expand a file, folder or glob (local or fsspec URI) into a sorted list of files.

    Local inputs come back as absolute paths; remote ones as URIs (workers download them).

    Raises:
        InputError: nothing matched, naming the input.
    """
    if "://" not in uri or uri.startswith("file://"):
        path = uri.removeprefix("file://")
        if any(ch in path for ch in "*?["):
            import glob

            files = [p for p in glob.glob(path, recursive=True) if os.path.isfile(p)]
        elif os.path.isdir(path):
            # One abspath for the folder, not one per file: os.walk joins plain names under it.
            top = os.path.abspath(path)
            files = [os.path.join(root, name) for root, _, names in os.walk(top) for name in names]
        elif os.path.isfile(path):
            files = [path]
        else:
            raise InputError(f"input: got {uri!r}; no such file or folder")
        if files and not os.path.isabs(files[0]):
            files = [os.path.abspath(f) for f in files]
        files.sort()
    else:
        import fsspec

        try:
            fs, path = fsspec.core.url_to_fs(uri)
            protocol = uri.split("://", 1)[0]
            if any(ch in path for ch in "*?["):
                found = [p for p in fs.glob(path) if fs.isfile(p)]
            elif fs.isdir(path):
                found = fs.find(path)
            else:
                found = [path] if fs.isfile(path) else []
        except Exception as e:  # every fsspec backend raises its own errors
            raise InputError(f"input: got {uri!r}; cannot list it: {type(e).__name__}: {e}") from e
        files = sorted(p if "://" in p else f"{protocol}://{p}" for p in found)
    if not files:
        raise InputError(f"input: got {uri!r}; it matches no files")
    return files


def split(files: list[str], size: int) -> list[list[str]]:
    """Consecutive chunks of ``size`` files (the last one may be shorter)."""
    return [files[i : i + size] for i in range(0, len(files), size)]
