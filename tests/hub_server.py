"""A Hugging Face hub on 127.0.0.1 for the pull tests: serves model repositories from memory the
way the hub's file API answers huggingface_hub (2.4), so `openuni-models pull` runs end to end
with `HF_ENDPOINT` pointed here.

What huggingface_hub asks, for a revision that is a commit hash (the registry pins those):
- `GET /api/models/{repo}/tree/{commit}?recursive=true`: the file listing (JSON list of
  `{"type": "file", "path", "size", "oid", "lfs": {"oid": sha256, "size", "pointerSize"}}`);
  `GET /api/models/{repo}/revision/{rev}` for a branch name (answers the commit as `sha`).
- `HEAD /{repo}/resolve/{commit}/{file}`: metadata in the headers, `X-Repo-Commit`, `ETag` (the
  git blob id) or `X-Linked-Etag` (the sha256 of an LFS file), `Content-Length`.
- `GET` of the same URL, with `Range: bytes=N-` when it resumes a cut transfer (206 answers).

Faults a test switches on: `cut[file] = n` closes the connection after the first half of the
body, n times; `fail` answers GETs of those files with 503 (the server going away mid-pull);
`corrupt` serves flipped bytes for those files (under the right ETag and length, as a bad mirror
would). Every request is logged in `requests` as (method, path, Range header).
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".onnx")


@dataclass
class Repo:
    commit: str
    files: dict[str, bytes]

    @classmethod
    def from_folder(cls, folder: Path, commit: str) -> "Repo":
        return cls(commit, {p.relative_to(folder).as_posix(): p.read_bytes()
                            for p in sorted(folder.rglob("*")) if p.is_file()})


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class TinyHub:
    repos: dict[str, Repo] = field(default_factory=dict)
    cut: dict[str, int] = field(default_factory=dict)
    fail: set[str] = field(default_factory=set)
    corrupt: set[str] = field(default_factory=set)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                hub._answer(self, body=False)

            def do_GET(self) -> None:
                hub._answer(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "TinyHub":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def gets(self, filename: str) -> list[str | None]:
        """The Range header of every GET of `filename` (None: the whole file)."""
        return [rng for method, path, rng in self.requests if method == "GET" and path.endswith("/" + filename)]

    def _answer(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(urlsplit(h.path).path)
        self.requests.append((h.command, path, h.headers.get("Range")))
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"]:
            return self._api(h, parts[2:])
        # /{org}/{name}/resolve/{revision}/{file...}
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve(h, f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]), body)
        self._error(h, 404, "not found")

    def _api(self, h: BaseHTTPRequestHandler, parts: list[str]) -> None:
        repo = self.repos.get("/".join(parts[:2]))
        if repo is None or len(parts) < 4 or parts[3] not in (repo.commit, "main"):
            return self._error(h, 404, "Repository or revision not found", "RepositoryNotFound")
        if parts[2] == "revision":
            return self._json(h, {"id": "/".join(parts[:2]), "sha": repo.commit,
                                  "siblings": [{"rfilename": name} for name in repo.files]})
        if parts[2] == "tree":
            return self._json(h, [self._tree_entry(name, data) for name, data in repo.files.items()])
        self._error(h, 404, "not found")

    @staticmethod
    def _tree_entry(name: str, data: bytes) -> dict:
        entry = {"type": "file", "path": name, "size": len(data), "oid": git_blob_id(data)}
        if name.endswith(LFS_SUFFIXES):
            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return entry

    def _resolve(self, h: BaseHTTPRequestHandler, repo_id: str, revision: str, name: str, body: bool) -> None:
        repo = self.repos.get(repo_id)
        if repo is None or revision not in (repo.commit, "main"):
            return self._error(h, 404, "Revision not found", "RevisionNotFound")
        if name not in repo.files:
            return self._error(h, 404, "Entry not found", "EntryNotFound")
        if body and name in self.fail:
            return self._error(h, 503, "Service unavailable")
        data = repo.files[name]
        etag = hashlib.sha256(data).hexdigest() if name.endswith(LFS_SUFFIXES) else git_blob_id(data)
        if name in self.corrupt:
            data = bytes(b ^ 0xFF for b in data)
        start = 0
        if body and (rng := h.headers.get("Range", "")).startswith("bytes="):
            start = int(rng[len("bytes="):].split("-")[0])
        h.send_response(206 if start else 200)
        h.send_header("X-Repo-Commit", repo.commit)
        h.send_header("X-Linked-Etag" if name.endswith(LFS_SUFFIXES) else "ETag", f'"{etag}"')
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Length", str(len(data) - start))
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.end_headers()
        if not body:
            return
        if self.cut.get(name, 0) > 0:  # half the body, then the connection drops
            self.cut[name] -= 1
            h.wfile.write(data[start:start + (len(data) - start) // 2])
            h.wfile.flush()
            h.close_connection = True
            h.connection.shutdown(2)
            return
        h.wfile.write(data[start:])

    @staticmethod
    def _json(h: BaseHTTPRequestHandler, value: object) -> None:
        data = json.dumps(value).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command == "GET":
            h.wfile.write(data)

    @staticmethod
    def _error(h: BaseHTTPRequestHandler, status: int, message: str, code: str | None = None) -> None:
        data = json.dumps({"error": message}).encode()
        h.send_response(status)
        if code:
            h.send_header("X-Error-Code", code)
        h.send_header("X-Error-Message", message)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command == "GET":
            h.wfile.write(data)
