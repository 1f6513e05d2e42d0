"""A tiny real Kubernetes API server for target tests, on 127.0.0.1 (not a mock).

It implements just what ``ClusterSink`` uses: server-side apply (``PATCH`` with
``application/apply-patch+yaml``) on namespaced object paths, ``GET`` of one object or of a
collection with an equality ``labelSelector``, ``DELETE``, and bearer-token auth. Objects are
kept as JSON in memory; a test sets a Deployment's ``status`` with ``set_status``. Usage::

    with FakeKubeApi() as api:
        kubeconfig = api.write_kubeconfig(tmp_path)   # context "fake"
        ...
        api.set_status("/apis/apps/v1/namespaces/ml/deployments/wine-v1", readyReplicas=1)
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml  # type: ignore[import-untyped]

TOKEN = "fake-token"
APPLY = "application/apply-patch+yaml"


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str | None


@dataclass
class FakeKubeApi:
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeKubeApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def write_kubeconfig(self, directory: Path) -> Path:
        path = directory / "kubeconfig"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": TOKEN}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}]}))
        return path

    def set_status(self, path: str, **status: Any) -> None:
        with self._lock:
            obj = self.objects[path]
            obj["status"] = {"observedGeneration": obj["metadata"]["generation"], **status}

    def _handle(self, method: str, raw_path: str, headers: Any, body: bytes
                ) -> tuple[int, dict[str, Any]]:
        url = urlsplit(raw_path)
        query = parse_qs(url.query)
        self.calls.append(Call(method, url.path, query, headers.get("Content-Type")))
        if headers.get("Authorization") != f"Bearer {TOKEN}":
            return 401, {"kind": "Status", "code": 401, "reason": "Unauthorized"}
        with self._lock:
            if method == "PATCH":
                if headers.get("Content-Type") != APPLY or "fieldManager" not in query:
                    return 415, {"kind": "Status", "code": 415}
                applied = yaml.safe_load(body)
                old = self.objects.get(url.path)
                generation = (old["metadata"]["generation"] + 1) if old else 1
                applied["metadata"]["generation"] = generation
                applied["status"] = old.get("status", {}) if old else {}
                self.objects[url.path] = applied
                return 200, applied
            if method == "DELETE":
                gone = self.objects.pop(url.path, None)
                return (200, gone) if gone else (404, {"kind": "Status", "code": 404})
            if url.path in self.objects:
                return 200, self.objects[url.path]
            wanted = dict(s.split("=", 1) for s in query.get("labelSelector", [""])[0].split(",")
                          if s)
            items = [o for p, o in sorted(self.objects.items())
                     if p.rsplit("/", 1)[0] == url.path
                     and wanted.items() <= o["metadata"].get("labels", {}).items()]
            return 200, {"kind": "List", "items": items}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                status, payload = fake._handle(self.command, self.path, self.headers,
                                               self.rfile.read(length))
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PATCH = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
