"""A custom container's server for the BYOC tests: the standard library's http.server, nothing of this project.

``python byoc_server.py PORT``: ``GET /alive`` and ``GET /healthy`` answer 200; ``POST /predict`` answers
``{"sum": <sum of the JSON list "data">, "authorization": <the Authorization header or null>, "query": <query>}``.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class Handler(BaseHTTPRequestHandler):
    def _send(self, status, payload):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path in ("/alive", "/healthy"):
            self._send(200, {"status": "ok"})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self):
        url = urlsplit(self.path)
        if url.path != "/predict":
            self._send(404, {"error": "not found"})
            return
        data = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        auth = self.headers.get("Authorization")
        self._send(200, {"sum": sum(data["data"]), "authorization": auth, "query": url.query})

    def log_message(self, format, *args):
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
