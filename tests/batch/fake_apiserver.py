"""A loopback HTTP server standing in for the Kubernetes API server (batch/v1 Jobs; v1 pods: list by label selector
and read a pod's log); records requests."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


class FakeApiServer:
    def __init__(self) -> None:
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        # (namespace, pod) -> {"labels": {...}, "log": "<lines, each starting with an RFC 3339 timestamp>"}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _body(self) -> Any:
                n = int(self.headers.get("content-length") or 0)
                return json.loads(self.rfile.read(n)) if n else None

            def _send(self, code: int, obj: Any) -> None:
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _status(self, code: int, reason: str, message: str) -> None:
                self._send(
                    code,
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "status": "Failure",
                        "reason": reason,
                        "message": message,
                        "code": code,
                    },
                )

            def _handle(self, method: str) -> None:
                url = urlsplit(self.path)
                body = self._body() if method in ("POST", "PATCH") else None
                fake.requests.append(
                    {
                        "method": method,
                        "path": url.path,
                        "query": parse_qs(url.query),
                        "content_type": self.headers.get("content-type"),
                        "body": body,
                    }
                )
                parts = url.path.strip("/").split("/")
                if parts[:3] == ["api", "v1", "namespaces"] and parts[4:5] == ["pods"]:
                    return self._pods(parts, parse_qs(url.query))
                # apis/batch/v1/namespaces/<ns>/jobs[/<name>]
                if parts[:3] != ["apis", "batch", "v1"] or len(parts) < 5 or parts[3] != "namespaces":
                    return self._status(404, "NotFound", f"no route {url.path}")
                ns = parts[4]
                name = parts[6] if len(parts) > 6 else None
                if method == "POST" and name is None:
                    key = (ns, body["metadata"]["name"])
                    if key in fake.jobs:
                        return self._status(409, "AlreadyExists", f'jobs.batch "{key[1]}" already exists')
                    job = dict(body)
                    job["metadata"] = {
                        **body["metadata"],
                        "uid": f"uid-{len(fake.jobs)}",
                        "creationTimestamp": "2026-11-23T12:00:00Z",
                        "resourceVersion": "1",
                    }
                    job["status"] = {}
                    fake.jobs[key] = job
                    return self._send(201, job)
                if method == "GET" and name is None:
                    items = [j for (n, _), j in fake.jobs.items() if n == ns]
                    return self._send(200, {"kind": "JobList", "apiVersion": "batch/v1", "items": items})
                if (ns, name) not in fake.jobs:
                    return self._status(404, "NotFound", f'jobs.batch "{name}" not found')
                if method == "GET":
                    return self._send(200, fake.jobs[(ns, name)])
                if method == "PATCH":
                    fake.jobs[(ns, name)] = merge_patch(fake.jobs[(ns, name)], body)
                    return self._send(200, fake.jobs[(ns, name)])
                return self._status(405, "MethodNotAllowed", method)

            def _pods(self, parts: list[str], query: dict[str, list[str]]) -> None:
                ns = parts[3]
                if len(parts) == 5:  # api/v1/namespaces/<ns>/pods?labelSelector=k=v,k=v
                    wanted = dict(p.split("=", 1) for p in query.get("labelSelector", [""])[0].split(",") if p)
                    items = [
                        {
                            "metadata": {"name": name, "namespace": ns, "labels": pod["labels"]},
                            "status": pod.get("status", {}),
                        }
                        for (n, name), pod in sorted(fake.pods.items())
                        if n == ns and all(pod["labels"].get(k) == v for k, v in wanted.items())
                    ]
                    return self._send(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})
                pod = fake.pods.get((ns, parts[5]))
                if pod is None or parts[6:] != ["log"]:
                    return self._status(404, "NotFound", f'pods "{parts[5]}" not found')
                if "error" in pod:  # (code, message): the API server failing to reach the pod's kubelet
                    return self._status(pod["error"][0], "InternalError", pod["error"][1])
                lines = pod["log"].splitlines(keepends=True)
                if "tailLines" in query:
                    lines = lines[-int(query["tailLines"][0]) :]
                if query.get("timestamps") != ["true"]:
                    lines = [line.partition(" ")[2] for line in lines]
                data = "".join(lines).encode()
                self.send_response(200)
                self.send_header("content-type", "text/plain")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_PATCH(self) -> None:
                self._handle("PATCH")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeApiServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
