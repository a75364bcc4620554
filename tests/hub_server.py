"""A minimal Hugging Face Hub for tests: the routes `huggingface_hub` uses to create a repo and commit small files.

No Hub can be reached from the tests, and PyPI ships no local Hub server, so this one speaks just enough HTTP on
127.0.0.1: repo creation, ``/api/validate-yaml``, preupload (every file uploaded inline) and the NDJSON commit
(base64 file contents). Commits land in memory: ``server.repos[repo_id][path] -> bytes``. Anything else is
answered 404 and recorded in ``server.unknown`` so a test can show what a client asked for.

    with HubServer() as hub:          # HF_ENDPOINT=hub.endpoint must be set before huggingface_hub is imported
        ...

It fails on cue: ``hub.fail("POST .*/commit/", 500, times=2)`` answers the next two commits with a 500;
``"drop"`` reads half the request and closes the connection unanswered; ``"stall"`` reads the request, waits
``seconds`` and answers 504, as the Hub's gateway does when its backend times out; ``skip=k`` lets k matching
requests through first. ``hub.requests`` lists every request with its outcome (``"POST /api/... -> 500"``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

USER = "tester"
_REPO = r"(?:models/)?(?P<repo>[^/]+/[^/]+)"


@dataclass
class Failure:
    route: str  # a regular expression matched against "METHOD /path"
    action: int | str  # an HTTP status, "drop" or "stall"
    times: int = 1
    skip: int = 0
    seconds: float = 0.0


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def _failed_on_cue(self) -> bool:
        """Apply the first cued failure this request matches; False when it is to be served."""
        request = f"{self.command} {self.path}"
        with self.server.lock:
            failure = next((f for f in self.server.failures if re.search(f.route, request) and f.times > 0), None)
            if failure is not None and failure.skip > 0:
                failure.skip, failure = failure.skip - 1, None
            elif failure is not None:
                failure.times -= 1
        if failure is None:
            self.server.requests.append(f"{request} -> served")
            return False
        self.server.requests.append(f"{request} -> {failure.action}")
        length = int(self.headers.get("Content-Length") or 0)
        if failure.action == "drop":
            self.rfile.read(length // 2)
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return True
        self.rfile.read(length)
        if failure.action == "stall":
            time.sleep(failure.seconds)
            self._reply(504, {"error": "Gateway Timeout"})
        else:
            self._reply(int(failure.action), {"error": f"failed on cue ({failure.action})"})
        return True

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
        if self._failed_on_cue():
            return
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
        if self._failed_on_cue():
            return
        if self.path.startswith("/api/whoami"):
            return self._reply(200, {"name": USER, "type": "user", "orgs": [], "auth": {"type": "access_token"}})
        self.server.unknown.append(f"GET {self.path}")
        return self._reply(404, {"error": "not in the test Hub"})


class _Server(ThreadingHTTPServer):
    endpoint: str
    repos: dict[str, dict[str, bytes]]
    unknown: list[str]
    authorizations: list[str]
    failures: list[Failure]
    requests: list[str]
    lock: threading.Lock

    def fail(self, route: str, action: int | str, times: int = 1, skip: int = 0, seconds: float = 0.0) -> None:
        self.failures.append(Failure(route, action, times, skip, seconds))


class HubServer:
    """Runs the test Hub in a thread on a free port of 127.0.0.1 for the duration of a ``with`` block."""

    def __enter__(self) -> _Server:
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.server.repos, self.server.unknown, self.server.authorizations = {}, [], []
        self.server.failures, self.server.requests, self.server.lock = [], [], threading.Lock()
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self.server

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
