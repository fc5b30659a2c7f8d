"""The init container's model fetcher (``python -m serving.fetch_model``), over real files, a real loopback HTTP
server and a real process."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from serving.fetch_model import FetchError, fetch_model, redact

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_folder_from_file_uri_lands_under_its_own_name(tmp_path: Path) -> None:
    model = tmp_path / "src" / "alice"
    (model / "sub").mkdir(parents=True)
    (model / "model.joblib").write_bytes(b"weights")
    (model / "sub" / "labels.json").write_text('["suv"]')
    dest = tmp_path / "models"
    got = fetch_model(model.as_uri(), dest)
    assert got == dest / "alice"
    assert (got / "model.joblib").read_bytes() == b"weights"
    assert (got / "sub" / "labels.json").read_text() == '["suv"]'
    assert sorted(p.name for p in dest.iterdir()) == ["alice"]  # no staging folder left


def test_single_file_over_http(http_root: tuple[str, Path], tmp_path: Path) -> None:
    base, root = http_root
    (root / "model.onnx").write_bytes(b"\x08\x01onnx")
    got = fetch_model(f"{base}/model.onnx?sig=SECRET", tmp_path / "m")
    assert got == tmp_path / "m" / "model.onnx"
    assert got.read_bytes() == b"\x08\x01onnx"


def test_existing_copy_is_kept(tmp_path: Path) -> None:
    dest = tmp_path / "m"
    (dest / "alice").mkdir(parents=True)
    (dest / "alice" / "old").write_text("kept")
    assert fetch_model((tmp_path / "nowhere" / "alice").as_uri(), dest) == dest / "alice"
    assert (dest / "alice" / "old").read_text() == "kept"


def test_missing_model_fails_with_redacted_uri(http_root: tuple[str, Path], tmp_path: Path) -> None:
    base, _ = http_root
    with pytest.raises(FetchError) as e:
        fetch_model(f"{base}/absent.bin?sig=SECRET", tmp_path / "m")
    assert str(e.value) == f"{base}/absent.bin: cannot copy the model: FileNotFoundError"
    assert list((tmp_path / "m").iterdir()) == []


def test_redact_drops_credentials() -> None:
    assert redact("https://user:pw@store.example.com:8443/m/a.bin?sv=1&sig=abc#x") == (
        "https://store.example.com:8443/m/a.bin"
    )


def test_command_line_process(tmp_path: Path) -> None:
    model = tmp_path / "bob.txt"
    model.write_text("lgb")
    ok = subprocess.run(
        [sys.executable, "-m", "serving.fetch_model", "--uri", model.as_uri(), "--dest", str(tmp_path / "out")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (ok.returncode, ok.stdout, ok.stderr) == (
        0,
        f"fetch_model: {model.as_uri()} -> {tmp_path / 'out' / 'bob.txt'}\n",
        "",
    )
    bad = subprocess.run(
        [sys.executable, "-m", "serving.fetch_model", "--uri", "nosuch://x/y", "--dest", str(tmp_path / "o2")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 1
    assert bad.stderr.startswith("fetch_model: nosuch://x/y: no filesystem for this scheme in the image (")
