"""A loopback stand-in for the Hub's HTTP API: just enough of create-repo, validate-yaml,
preupload (everything "regular") and commit for huggingface_hub's real upload code to run
offline. Every commit's files are recorded (path -> bytes) for the test to inspect."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeHub:
    def __init__(self):
        self.repos: dict[str, dict] = {}  # "model:owner/name" -> {"private": bool, "sdk": ...}
        self.commits: list[dict] = []  # {"repo", "revision", "summary", "files": {path: bytes}}
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _json(self, code: int, payload) -> None:
                body = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                hub.requests.append(f"POST {self.path}")
                if self.headers.get("Authorization") != "Bearer hf_fake_token":
                    return self._json(401, {"error": "Invalid credentials"})
                parts = self.path.split("?")[0].strip("/").split("/")
                if self.path.startswith("/api/repos/create"):
                    data = json.loads(body)
                    kind = data.get("type", "model")
                    repo = f"{data['organization']}/{data['name']}" if data.get("organization") else data["name"]
                    private = data.get("private", data.get("visibility") == "private")
                    hub.repos[f"{kind}:{repo}"] = {"private": private, "sdk": data.get("sdk"),
                                                   "variables": data.get("variables")}
                    return self._json(200, {"url": f"{hub.url}/{repo}", "name": repo})
                if self.path.startswith("/api/validate-yaml"):
                    return self._json(200, {"errors": [], "warnings": []})
                if len(parts) >= 6 and parts[4] == "preupload":
                    files = json.loads(body)["files"]
                    return self._json(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                       "shouldIgnore": False, "oid": None} for f in files]})
                if len(parts) >= 6 and parts[4] == "commit":
                    repo, revision = f"{parts[2]}/{parts[3]}", parts[5]
                    files, summary = {}, ""
                    for line in body.decode().splitlines():
                        item = json.loads(line)
                        if item["key"] == "header":
                            summary = item["value"]["summary"]
                        elif item["key"] == "file":
                            files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    hub.commits.append({"repo": f"{parts[1][:-1]}:{repo}", "revision": revision,
                                        "summary": summary, "files": files})
                    return self._json(200, {"commitUrl": f"{hub.url}/{repo}/commit/abc123",
                                            "commitOid": "abc123" + "0" * 34, "success": True})
                return self._json(404, {"error": f"not faked: {self.path}"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
