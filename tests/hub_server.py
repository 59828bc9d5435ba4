"""An in-memory, in-process fake of the Hugging Face Hub HTTP API, for push/pull tests with no network.

It speaks the endpoints `huggingface_hub` 2.x calls for `create_repo`, `upload_folder` / `create_commit`
(`model.push_to_hub`, `Trainer.push_to_hub`), `hf_hub_download`, `snapshot_download`, `from_pretrained`
and `Dataset.push_to_hub` / `load_dataset` (plain HTTP + LFS; Xet must be disabled with
`HF_HUB_DISABLE_XET=1`):

| flow | requests |
|---|---|
| create / delete repo | `POST /api/repos/create` (409 when it exists), `DELETE /api/repos/delete` |
| commit | `POST /api/{models,datasets}/{id}/preupload/{rev}` -> per-file `uploadMode` (regular / lfs), `POST /{id}.git/info/lfs/objects/batch` + `PUT <href>` for LFS files, `POST /api/.../commit/{rev}` (NDJSON: header, file, lfsFile, deletedFile) |
| listing | `GET /api/.../tree/{rev}[/{path}]`, `POST /api/.../paths-info/{rev}`, `GET /api/.../revision/{rev}`, `GET /api/{models,datasets}/{id}` |
| download | `HEAD`/`GET /[datasets/]{id}/resolve/{rev}/{path}` with `X-Repo-Commit` and `ETag` headers |
| misc | `GET /api/whoami-v2`, `POST /api/validate-yaml` |

Errors carry `X-Error-Code` (`RepoNotFound`, `EntryNotFound`, `RevisionNotFound`), which `huggingface_hub`
turns into its typed exceptions. Anything else answers 404 with "fakehub: unhandled ..." in the body and
is kept in `FakeHub.unhandled` so a test can show what the client wanted.

Usage (the `fake_hub` fixture in `tests/conftest.py` does this and patches `huggingface_hub`'s constants):

```python
with FakeHub() as hub:          # starts a server on 127.0.0.1:<free port>
    os.environ["HF_ENDPOINT"] = hub.url
    ...
    hub.files("tester/my-model")  # {path: bytes} of the repo's head revision
```
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

USER = "tester"
DEFAULT_BRANCH = "main"
# Files the server asks the client to send through LFS (the real Hub decides by size and extension).
LFS_EXTENSIONS = {"safetensors", "bin", "parquet", "arrow", "pt", "pth", "npy", "npz", "pkl", "gz", "zip", "msgpack"}


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


@dataclass
class FakeRepo:
    repo_type: str  # "model" or "dataset"
    repo_id: str
    private: bool = False
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[str] = field(default_factory=list)  # newest last

    @property
    def sha(self) -> str:
        return self.commits[-1] if self.commits else _sha1(f"{self.repo_type}/{self.repo_id}".encode())

    def commit(self, message: str) -> str:
        content = repr(sorted((path, _sha1(data)) for path, data in self.files.items()))
        self.commits.append(_sha1(f"{self.sha}\n{message}\n{content}".encode()))
        return self.sha

    def entries(self) -> dict[str, dict]:
        """Tree entries (files and the directories above them) keyed by path."""
        out = {}
        for path, data in self.files.items():
            out[path] = {"type": "file", "path": path, "size": len(data), "oid": _sha1(data)}
            if self._is_lfs(path):
                out[path]["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            parts = path.split("/")
            for depth in range(1, len(parts)):
                directory = "/".join(parts[:depth])
                out[directory] = {"type": "directory", "path": directory, "size": 0, "oid": _sha1(directory.encode())}
        return out

    @staticmethod
    def _is_lfs(path: str) -> bool:
        return path.rsplit(".", 1)[-1] in LFS_EXTENSIONS


class FakeHub:
    """The fake Hub: state (repos, LFS blobs, request log) plus a threaded HTTP server serving it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.repos: dict[tuple[str, str], FakeRepo] = {}
        self.blobs: dict[str, bytes] = {}  # sha256 -> content, uploaded through LFS
        self.requests: list[str] = []  # "METHOD /path" of every request, in order
        self.unhandled: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHub:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- helpers for tests
    def repo(self, repo_id: str, repo_type: str = "model") -> FakeRepo:
        return self.repos[(repo_type, repo_id)]

    def files(self, repo_id: str, repo_type: str = "model") -> dict[str, bytes]:
        return dict(self.repo(repo_id, repo_type).files)


def _repo_type(segment: str | None) -> str:
    return "dataset" if segment and segment.startswith("dataset") else "model"


_LFS_BATCH = re.compile(r"^/(datasets/)?([^/]+/[^/]+?)\.git/info/lfs/objects/batch$")
_API_REPO = re.compile(
    r"^/api/(models|datasets)/([^/]+/[^/]+)"
    r"(?:/(preupload|commit|tree|paths-info|revision)(?:/([^/]+))?(?:/(.*))?)?$"
)
_RESOLVE = re.compile(r"^/(datasets/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")


def _handler_for(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

        # ---------------------------------------------------------------- plumbing
        def _send(self, code: int, body: bytes | dict | list = b"", headers: dict[str, str] | None = None) -> None:
            headers = dict(headers or {})
            if not isinstance(body, bytes):
                body = json.dumps(body).encode()
                headers.setdefault("Content-Type", "application/json")
            self.send_response(code)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, code: int, error_code: str, message: str, headers: dict | None = None) -> None:
            self._send(code, {"error": message}, {"X-Error-Code": error_code, **(headers or {})})

        def _find(self, repo_type: str, repo_id: str) -> FakeRepo | None:
            repo = hub.repos.get((repo_type, repo_id))
            if repo is None:
                self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
            return repo

        def _check_revision(self, repo: FakeRepo, revision: str | None) -> bool:
            revision = unquote(revision or DEFAULT_BRANCH)
            if revision in (DEFAULT_BRANCH, repo.sha) or revision in repo.commits:
                return True
            self._error(404, "RevisionNotFound", f"Revision {revision} not found")
            return False

        def _route(self) -> None:
            url = urlparse(self.path)
            path = unquote(url.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            host = f"http://{self.headers.get('Host')}"
            with hub._lock:
                hub.requests.append(f"{self.command} {path}")
                self._dispatch(path, url.query, body, host)

        do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _route

        # ---------------------------------------------------------------- endpoints
        def _dispatch(self, path: str, query: str, body: bytes, host: str) -> None:
            if path == "/api/whoami-v2":
                return self._send(200, {"type": "user", "name": USER, "fullname": USER, "orgs": [], "auth": {}})
            if path == "/api/validate-yaml":
                return self._send(200, {"errors": [], "warnings": []})
            if path == "/api/repos/create":
                return self._create_repo(json.loads(body or b"{}"), host)
            if path == "/api/repos/delete":
                request = json.loads(body or b"{}")
                repo_id = f"{request.get('organization') or USER}/{request['name']}"
                if hub.repos.pop((request.get("type") or "model", repo_id), None) is None:
                    return self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
                return self._send(200, {})
            if match := _LFS_BATCH.match(path):
                return self._lfs_batch(json.loads(body), host)
            if path.startswith("/__lfs__/"):
                oid = path.rsplit("/", 1)[1]
                if hashlib.sha256(body).hexdigest() != oid:
                    return self._error(400, "BadRequest", f"LFS upload does not match its oid {oid}")
                hub.blobs[oid] = body
                return self._send(200)
            if match := _API_REPO.match(path):
                repo_type, repo_id, operation, revision, rest = match.groups()
                repo = self._find(_repo_type(repo_type), repo_id)
                if repo is None:
                    return None
                if operation is None:
                    return self._repo_info(repo)
                if not self._check_revision(repo, revision):
                    return None
                if operation == "preupload":
                    return self._preupload(json.loads(body))
                if operation == "commit":
                    return self._commit(repo, body, host)
                if operation == "revision":
                    return self._repo_info(repo)
                if operation == "paths-info":
                    return self._paths_info(repo, body)
                return self._tree(repo, (rest or "").strip("/"), "recursive=true" in query.lower())
            if match := _RESOLVE.match(path):
                repo_type, repo_id, revision, filename = match.groups()
                repo = self._find(_repo_type(repo_type), repo_id)
                if repo is None or not self._check_revision(repo, revision):
                    return None
                data = repo.files.get(filename)
                headers = {"X-Repo-Commit": repo.sha}
                if data is None:
                    return self._error(404, "EntryNotFound", f"{filename} not found", headers)
                etag = hashlib.sha256(data).hexdigest() if FakeRepo._is_lfs(filename) else _sha1(data)
                return self._send(200, data, {**headers, "ETag": f'"{etag}"', "Content-Type": "application/octet-stream"})
            hub.unhandled.append(f"{self.command} {path}")
            return self._send(404, {"error": f"fakehub: unhandled {self.command} {path}"})

        def _create_repo(self, request: dict, host: str) -> None:
            repo_type = request.get("type") or "model"
            repo_id = f"{request.get('organization') or USER}/{request['name']}"
            if (repo_type, repo_id) in hub.repos:
                return self._send(409, {"error": "You already created this repo", "url": f"{host}/{repo_id}"})
            private = bool(request.get("private")) or request.get("visibility") in ("private", "protected")
            hub.repos[(repo_type, repo_id)] = FakeRepo(repo_type, repo_id, private=private)
            prefix = "datasets/" if repo_type == "dataset" else ""
            return self._send(200, {"url": f"{host}/{prefix}{repo_id}", "name": repo_id})

        def _lfs_batch(self, request: dict, host: str) -> None:
            objects = []
            for obj in request["objects"]:
                entry = {"oid": obj["oid"], "size": obj["size"]}
                if obj["oid"] not in hub.blobs:  # already stored: the client skips the upload
                    entry["actions"] = {"upload": {"href": f"{host}/__lfs__/{obj['oid']}"}}
                objects.append(entry)
            return self._send(200, {"transfer": "basic", "objects": objects}, {"Content-Type": "application/vnd.git-lfs+json"})

        def _preupload(self, request: dict) -> None:
            files = [
                {"path": f["path"], "uploadMode": "lfs" if FakeRepo._is_lfs(f["path"]) else "regular", "shouldIgnore": False}
                for f in request["files"]
            ]
            return self._send(200, {"files": files})

        def _commit(self, repo: FakeRepo, body: bytes, host: str) -> None:
            message = ""
            for line in body.decode().splitlines():
                if not line.strip():
                    continue
                item = json.loads(line)
                key, value = item["key"], item["value"]
                if key == "header":
                    message = value.get("summary", "")
                elif key == "file":
                    repo.files[value["path"]] = base64.b64decode(value["content"])
                elif key == "lfsFile":
                    if value["oid"] not in hub.blobs:
                        return self._error(422, "BadRequest", f"LFS object {value['oid']} was never uploaded")
                    repo.files[value["path"]] = hub.blobs[value["oid"]]
                elif key == "deletedFile":
                    repo.files.pop(value["path"], None)
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    for path in [p for p in repo.files if p.startswith(prefix)]:
                        del repo.files[path]
            sha = repo.commit(message)
            return self._send(200, {"commitUrl": f"{host}/{repo.repo_id}/commit/{sha}", "commitOid": sha,
                                    "success": True})

        def _repo_info(self, repo: FakeRepo) -> None:
            return self._send(200, {
                "id": repo.repo_id,
                "modelId": repo.repo_id,
                "sha": repo.sha,
                "private": repo.private,
                "disabled": False,
                "gated": False,
                "tags": [],
                "siblings": [{"rfilename": path} for path in sorted(repo.files)],
            })

        def _paths_info(self, repo: FakeRepo, body: bytes) -> None:
            if body[:1] == b"{":
                wanted = json.loads(body).get("paths", [])
            else:
                wanted = parse_qs(body.decode()).get("paths", [])
            entries = repo.entries()
            return self._send(200, [entries[p] for p in wanted if p in entries])

        def _tree(self, repo: FakeRepo, prefix: str, recursive: bool) -> None:
            entries = repo.entries()
            inside = [e for p, e in sorted(entries.items()) if not prefix or p.startswith(prefix + "/")]
            if prefix and not inside:
                return self._error(404, "EntryNotFound", f"{prefix} not found")
            if not recursive:
                depth = prefix.count("/") + 1 if prefix else 0
                inside = [e for e in inside if e["path"].count("/") == depth]
            return self._send(200, inside)

    return Handler


__all__ = ["FakeHub", "FakeRepo", "USER"]
