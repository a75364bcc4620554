"""A minimal Hugging Face Hub for tests: the routes `huggingface_hub` uses to create a repo and commit small files.

No Hub can be reached from the tests, and PyPI ships no local Hub server, so this one speaks just enough HTTP on
127.0.0.1: repo creation, ``/api/validate-yaml``, preupload (every file uploaded inline) and the NDJSON commit
(base64 file contents). Commits land in memory: ``server.repos[repo_id][path] -> bytes``. Anything else is
answered 404 and recorded in ``server.unknown`` so a test can show what a client asked for.

    with HubServer() as hub:          # HF_ENDPOINT=hub.endpoint must be set before huggingface_hub is imported
        ...
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

USER = "tester"
_REPO = r"(?:models/)?(?P<repo>[^/]+/[^/]+)"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def _reply(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_POST(self) -> None:
        body = self._body()
        self.server.authorizations.append(self.headers.get("Authorization", ""))
        if self.path == "/api/repos/create":
            request = json.loads(body)
            repo_id = f"{request.get('organization') or USER}/{request['name']}"
            self.server.repos.setdefault(repo_id, {})
            return self._reply(200, {"url": f"{self.server.endpoint}/{repo_id}", "name": repo_id, "id": repo_id})
        if self.path == "/api/validate-yaml":
            return self._reply(200, {"errors": [], "warnings": []})
        if match := re.fullmatch(rf"/api/{_REPO}/preupload/(?P<revision>[^/]+)", self.path):
            files = json.loads(body)["files"]
            modes = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
            return self._reply(200, {"files": modes})
        if match := re.fullmatch(rf"/api/{_REPO}/commit/(?P<revision>[^/]+)", self.path):
            repo = self.server.repos.setdefault(match["repo"], {})
            for line in body.decode().splitlines():
                entry = json.loads(line)
                if entry["key"] == "file":
                    repo[entry["value"]["path"]] = base64.b64decode(entry["value"]["content"])
                elif entry["key"] == "deletedFile":
                    repo.pop(entry["value"]["path"], None)
            oid = hashlib.sha1(body).hexdigest()
            return self._reply(
                200, {"commitUrl": f"{self.server.endpoint}/{match['repo']}/commit/{oid}", "commitOid": oid}
            )
        self.server.unknown.append(f"POST {self.path}")
        return self._reply(404, {"error": "not in the test Hub"})

    def do_GET(self) -> None:
        if self.path.startswith("/api/whoami"):
            return self._reply(200, {"name": USER, "type": "user", "orgs": [], "auth": {"type": "access_token"}})
        self.server.unknown.append(f"GET {self.path}")
        return self._reply(404, {"error": "not in the test Hub"})


class _Server(ThreadingHTTPServer):
    endpoint: str
    repos: dict[str, dict[str, bytes]]
    unknown: list[str]
    authorizations: list[str]


class HubServer:
    """Runs the test Hub in a thread on a free port of 127.0.0.1 for the duration of a ``with`` block."""

    def __enter__(self) -> _Server:
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.server.repos, self.server.unknown, self.server.authorizations = {}, [], []
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self.server

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
