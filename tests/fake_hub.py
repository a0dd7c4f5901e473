"""In-memory fake of the Hugging Face Hub HTTP API, for tests.

The real Hub is unreachable in CI (and tests run with ``HF_HUB_OFFLINE=1``), so this module plugs an
``httpx2.MockTransport`` into ``huggingface_hub`` through its public ``set_client_factory`` hook. Every
HTTP call made by ``huggingface_hub`` (and therefore by ``transformers`` and ``datasets``, which go
through it) is answered by :class:`FakeHub`, which keeps repos and their files in memory so tests can
assert on what was uploaded::

    def test_upload(fake_hub):
        HfApi().upload_file(path_or_fileobj=b"hi", path_in_repo="a.txt", repo_id="user/repo")
        assert fake_hub.files("user/repo") == {"a.txt": b"hi"}

Get the ``fake_hub`` fixture either with ``from tests.fake_hub import fake_hub`` in a test module, or
for all tests with ``pytest_plugins = ["tests.fake_hub"]`` in a conftest.py (``tests`` must then be
importable: repo-root conftest.py, or ``tests/__init__.py``, or ``pythonpath = ["."]`` in the pytest
config). For other scopes, or outside pytest, use the :func:`use_fake_hub` context manager.

Scope of the fake (only what the libraries actually call, found by reading huggingface_hub 2.4 and
running transformers 5.24 / datasets 5.2 against it):

* ``GET  /api/agent-harnesses``, ``GET /api/whoami-v2``, ``POST /api/validate-yaml``
* ``POST /api/repos/create``, ``DELETE /api/repos/delete``
* ``GET  /api/{type}s/{repo}`` and ``/api/{type}s/{repo}/revision/{rev}`` (repo_info, with siblings)
* ``GET  /api/{type}s/{repo}/tree/{rev}[/{path}]`` (list_repo_tree / list_repo_files / HfFileSystem)
* ``POST /api/{type}s/{repo}/paths-info/{rev}`` (get_paths_info / HfFileSystem.info)
* ``GET  /api/{type}s/{repo}/refs``, ``GET /api/{type}s/{repo}/commits/{rev}``
* ``POST|DELETE /api/{type}s/{repo}/branch/{name}``
* ``POST /api/{type}s/{repo}/preupload/{rev}``: answers uploadMode "lfs" for binary-looking files (the
  Hub's default ``.gitattributes`` suffixes: ``.safetensors``, ``.parquet``, ``.bin``...) and for files of
  10 MiB or more, "regular" otherwise. LFS is needed because ``datasets.push_to_hub`` pre-uploads its
  parquet shards from temp files that it deletes *before* the commit, which only works with LFS.
* ``POST /[datasets/|spaces/]{repo}.git/info/lfs/objects/batch`` + ``PUT /fake-lfs/{oid}``: the legacy
  git-LFS "basic" transfer. The fixture disables Xet (``HF_HUB_DISABLE_XET``) because ``hf_xet`` talks
  HTTP from Rust, outside of the httpx2 transport, so it cannot be faked here.
* ``POST /api/{type}s/{repo}/commit/{rev}`` (NDJSON: header, file (base64), lfsFile, deletedFile,
  deletedFolder; ``create_pr=1`` opens a ``refs/pr/N`` ref)
* ``HEAD|GET /[datasets/|spaces/]{repo}/resolve/{rev}/{path}`` (hf_hub_download, with Range support;
  LFS files are served directly with their sha256 as ETag instead of via a CDN redirect)

Anything else gets a 404 (or 400) whose body says which request the fake did not understand. Every
request is recorded in ``FakeHub.requests`` as ``(method, path)`` and every error answer in
``FakeHub.errors`` as ``(method, path, status, message)``, to ease debugging. Note that datasets also
probes two non-Hub hosts through the same client (``s3.amazonaws.com/datasets.huggingface.co/...`` for a
legacy script and ``datasets-server.huggingface.co/info``); both get the 404 it tolerates.

Known simplifications: no auth / private-repo checks, no Xet, no LFS multipart / verify, no gitignore
handling, no tags, no pagination (everything fits in one page); whether a file is LFS is decided from
its path and size (not recorded at commit time); the tree "lastCommit" of every path is the head commit;
repos start with an empty initial commit (the real Hub adds a ``.gitattributes`` file, which would only
be noise in assertions).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import os
import re
import sys
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, unquote

import httpx2
import pytest
import yaml
from huggingface_hub import constants, set_async_client_factory, set_client_factory
from huggingface_hub.utils import _http as hf_http

__all__ = ["FAKE_TOKEN", "FakeCommit", "FakeHub", "FakeRepo", "fake_hub", "git_blob_sha1", "is_lfs", "use_fake_hub"]

FAKE_TOKEN = "hf_fake_token_for_tests"
REPO_TYPES = ("model", "dataset", "space")
# URL prefix of the "resolve" (download) route and of the web URLs, per repo type.
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}


def git_blob_sha1(data: bytes) -> str:
    """Git object id of a blob: what the Hub uses as ETag / oid of regular (non-LFS) files.

    huggingface_hub compares it with the local file's sha1 to skip unchanged files in upload_folder.
    """
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


# Suffixes tracked by LFS in the .gitattributes the Hub puts in new repos (subset that matters here).
LFS_SUFFIXES = (
    ".7z", ".arrow", ".bin", ".bz2", ".ckpt", ".ftz", ".gz", ".h5", ".joblib", ".mlmodel", ".model", ".msgpack",
    ".npy", ".npz", ".onnx", ".ot", ".parquet", ".pb", ".pickle", ".pkl", ".pt", ".pth", ".rar", ".safetensors",
    ".tar", ".tflite", ".tgz", ".wasm", ".xz", ".zip", ".zst",
)
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024  # the Hub refuses regular (non-LFS) files above 10 MiB


def is_lfs(path: str, content_or_size: bytes | int) -> bool:
    """Whether the fake Hub stores this file with LFS (empty files never are: the client forbids it)."""
    size = content_or_size if isinstance(content_or_size, int) else len(content_or_size)
    return size > 0 and (path.lower().endswith(LFS_SUFFIXES) or size >= LFS_SIZE_THRESHOLD)


def _lfs_info(content: bytes, sha256_key: str) -> dict:
    # LFS metadata as listed by the Hub; repo info names the hash "sha256", the tree API names it "oid".
    pointer_size = len(lfs_pointer(content))
    return {sha256_key: hashlib.sha256(content).hexdigest(), "size": len(content), "pointerSize": pointer_size}


def lfs_pointer(content: bytes) -> bytes:
    """The git-LFS pointer file git actually stores for an LFS file (its sha1 is the tree oid)."""
    sha256 = hashlib.sha256(content).hexdigest()
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {len(content)}\n".encode()


class _HubError(Exception):
    """Raised inside route handlers; converted into an HTTP error response the way the Hub formats them.

    ``X-Error-Code`` is what ``hf_raise_for_status`` maps onto RepositoryNotFoundError /
    RevisionNotFoundError / EntryNotFoundError, so the client raises the same exceptions as with the real Hub.
    """

    def __init__(self, status: int, message: str, error_code: str | None = None, headers=None, **extra):
        super().__init__(message)
        self.status, self.message, self.error_code, self.extra = status, message, error_code, extra
        self.headers: dict[str, str] = dict(headers or {})

    def to_response(self) -> httpx2.Response:
        headers = dict(self.headers)
        headers["X-Error-Message"] = self.message.encode("ascii", "replace").decode()  # headers are ASCII
        if self.error_code:
            headers["X-Error-Code"] = self.error_code
        return httpx2.Response(self.status, json={"error": self.message, **self.extra}, headers=headers)


@dataclass
class FakeCommit:
    oid: str  # 40-hex, so that huggingface_hub treats it as a commit hash
    title: str
    message: str
    files: dict[str, bytes]  # full snapshot of the repo after this commit (path -> content)
    parent: str | None
    date: str  # ISO 8601


@dataclass
class FakeRepo:
    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    commits: dict[str, FakeCommit] = field(default_factory=dict)  # oid -> commit
    refs: dict[str, str] = field(default_factory=dict)  # branch or "refs/pr/N" -> commit oid

    def resolve(self, revision: str) -> FakeCommit:
        """Branch, PR ref or full commit oid -> commit (404 RevisionNotFound otherwise)."""
        oid = self.refs.get(revision, revision)
        if oid not in self.commits:
            raise _HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return self.commits[oid]

    def history(self, revision: str = "main") -> list[FakeCommit]:
        """Commits reachable from ``revision``, newest first (like ``list_repo_commits``)."""
        out, commit = [], self.resolve(revision)
        while commit is not None:
            out.append(commit)
            commit = self.commits.get(commit.parent) if commit.parent else None
        return out


class FakeHub:
    """In-memory Hub. Pass :meth:`handler` to an ``httpx2.MockTransport`` (the ``fake_hub`` fixture does it).

    Public helpers for tests: :meth:`files`, :meth:`file`, :meth:`repo`, :meth:`repo_exists`,
    :meth:`commits`, :meth:`create_repo` and :meth:`commit` (to seed content without going through HTTP),
    plus the ``requests`` and ``errors`` logs.
    """

    def __init__(self, username: str = "user"):
        self.username = username  # namespace of repos created without explicit namespace (whoami)
        self.repos: dict[tuple[str, str], FakeRepo] = {}  # (repo_type, repo_id) -> repo
        self.requests: list[tuple[str, str]] = []  # (method, url path) of every request received
        # (method, url path, status, message) of every error answered; some are normal client probing
        # (e.g. 404 on README.md before a model card is created), but it is the first place to look.
        self.errors: list[tuple[str, str, int, str]] = []
        self.lfs_objects: dict[str, bytes] = {}  # sha256 -> content, filled by the LFS upload (PUT)
        self._lock = threading.Lock()  # LFS uploads of several files run in a thread pool
        self._counter = itertools.count()
        # Deterministic, strictly increasing timestamps: commit dates stay ordered without sleeping.
        self._epoch = datetime(2024, 1, 1, tzinfo=timezone.utc)

    # ------------------------------------------------------------------ test-facing helpers

    def repo(self, repo_id: str, repo_type: str = "model") -> FakeRepo:
        try:
            return self.repos[(repo_type, repo_id)]
        except KeyError:
            known = sorted(f"{t}:{r}" for t, r in self.repos)
            raise KeyError(f"No {repo_type} repo {repo_id!r} on the fake hub (known: {known})") from None

    def repo_exists(self, repo_id: str, repo_type: str = "model") -> bool:
        return (repo_type, repo_id) in self.repos

    def files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> dict[str, bytes]:
        """Snapshot ``{path: bytes}`` of a repo at ``revision`` (a copy: mutating it has no effect)."""
        return dict(self.repo(repo_id, repo_type).resolve(revision).files)

    def file(self, repo_id: str, path: str, repo_type: str = "model", revision: str = "main") -> bytes:
        return self.files(repo_id, repo_type, revision)[path]

    def commits(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> list[FakeCommit]:
        """History of ``revision``, newest first; ``[-1]`` is the initial empty commit."""
        return self.repo(repo_id, repo_type).history(revision)

    def create_repo(self, repo_id: str, repo_type: str = "model", private: bool = False) -> FakeRepo:
        if repo_type not in REPO_TYPES:
            raise ValueError(f"repo_type must be one of {REPO_TYPES}, got {repo_type!r}")
        if (repo_type, repo_id) in self.repos:
            raise ValueError(f"{repo_type} repo {repo_id} already exists")
        repo = FakeRepo(repo_type=repo_type, repo_id=repo_id, private=private, created_at=self._now())
        self.repos[(repo_type, repo_id)] = repo
        # The Hub creates every repo with an initial commit, so "main" resolves right away.
        self._new_commit(repo, "main", {}, "initial commit", "")
        return repo

    def commit(
        self,
        repo_id: str,
        files: dict[str, bytes | str],
        repo_type: str = "model",
        revision: str = "main",
        message: str = "seed",
        delete: tuple[str, ...] = (),
    ) -> str:
        """Seed a repo directly, without HTTP (repo created if missing). Returns the new commit oid."""
        if (repo_type, repo_id) not in self.repos:
            self.create_repo(repo_id, repo_type)
        repo = self.repo(repo_id, repo_type)
        if revision not in repo.refs:
            raise ValueError(f"{revision!r} is not a branch of {repo_id} (branches: {sorted(repo.refs)})")
        snapshot = dict(repo.resolve(revision).files)
        for path in delete:
            snapshot.pop(path)
        snapshot.update({p: c.encode() if isinstance(c, str) else bytes(c) for p, c in files.items()})
        return self._new_commit(repo, revision, snapshot, message, "").oid

    # ------------------------------------------------------------------ transport plumbing

    def client(self) -> httpx2.Client:
        # follow_redirects mirrors huggingface_hub's default client; the hub's request event hook is
        # deliberately not installed (it only raises in offline mode and adds tracing headers).
        return httpx2.Client(transport=httpx2.MockTransport(self.handler), follow_redirects=True, timeout=None)

    def async_client(self) -> httpx2.AsyncClient:
        # MockTransport accepts a sync handler for async clients too (it reads the body first).
        return httpx2.AsyncClient(transport=httpx2.MockTransport(self.handler), follow_redirects=True, timeout=None)

    def handler(self, request: httpx2.Request) -> httpx2.Response:
        with self._lock:
            self.requests.append((request.method, request.url.path))
            try:
                return self._route(request)
            except _HubError as err:
                self.errors.append((request.method, request.url.path, err.status, err.message))
                return err.to_response()

    def _route(self, request: httpx2.Request) -> httpx2.Response:
        # Split the *raw* path, then unquote each segment: revisions such as "refs/pr/1" and tree paths
        # arrive percent-encoded (%2F) and must stay a single segment.
        raw_path = request.url.raw_path.decode().split("?", 1)[0]
        segs = [unquote(s) for s in raw_path.strip("/").split("/")]
        method = request.method

        match segs:
            case ["api", "agent-harnesses"] if method == "GET":
                # huggingface_hub's AI-agent detection registry (fetched when not offline); empty is fine.
                return httpx2.Response(200, json={"standardEnvVars": [], "harnesses": {}})
            case ["api", "whoami-v2"] if method == "GET":
                return httpx2.Response(200, json=self._whoami())
            case ["api", "validate-yaml"] if method == "POST":
                # Called when a README.md with YAML metadata is uploaded (model / dataset cards).
                return self._validate_yaml(request)
            case ["api", "repos", "create"] if method == "POST":
                return self._api_create_repo(request)
            case ["api", "repos", "delete"] if method == "DELETE":
                return self._api_delete_repo(request)
            case ["api", plural, namespace, name, *tail] if plural in ("models", "datasets", "spaces"):
                repo_type, repo_id = plural[:-1], f"{namespace}/{name}"
                return self._route_repo_api(request, method, repo_type, repo_id, tail)
            case ["fake-lfs", oid] if method == "PUT":
                return self._lfs_put(request, oid)
            case [*prefix, namespace, name, "info", "lfs", "objects", "batch"] if (
                method == "POST" and name.endswith(".git") and prefix in ([], ["datasets"], ["spaces"])
            ):
                repo_type = prefix[0][:-1] if prefix else "model"
                return self._lfs_batch(request, repo_type, f"{namespace}/{name[: -len('.git')]}")
            case ["datasets" | "spaces" as plural, namespace, name, "resolve", revision, *path] if path:
                return self._resolve(request, plural[:-1], f"{namespace}/{name}", revision, "/".join(path))
            case [namespace, name, "resolve", revision, *path] if path and namespace != "api":
                return self._resolve(request, "model", f"{namespace}/{name}", revision, "/".join(path))
        raise _HubError(404, f"Fake hub: no route for {method} {request.url} (not implemented in tests/fake_hub.py)")

    def _route_repo_api(self, request, method, repo_type, repo_id, tail) -> httpx2.Response:
        repo = self._get_repo(repo_type, repo_id)
        match tail:
            case [] if method == "GET":
                return self._repo_info(request, repo, "main")
            case ["revision", revision] if method == "GET":
                return self._repo_info(request, repo, revision)
            case ["tree", revision, *path] if method == "GET":
                return self._tree(request, repo, revision, "/".join(path))
            case ["paths-info", revision] if method == "POST":
                return self._paths_info(request, repo, revision)
            case ["preupload", revision] if method == "POST":
                return self._preupload(request, repo, revision)
            case ["commit", revision] if method == "POST":
                return self._api_commit(request, repo, revision)
            case ["refs"] if method == "GET":
                return self._refs(repo)
            case ["commits", revision] if method == "GET":
                return self._list_commits(repo, revision)
            case ["branch", branch] if method == "POST":
                return self._create_branch(request, repo, branch)
            case ["branch", branch] if method == "DELETE":
                if branch not in repo.refs or branch == "main":
                    raise _HubError(404 if branch not in repo.refs else 403, f"Cannot delete branch {branch}")
                del repo.refs[branch]
                return httpx2.Response(200, json={})
        raise _HubError(404, f"Fake hub: no route for {method} {request.url} (not implemented in tests/fake_hub.py)")

    # ------------------------------------------------------------------ internals

    def _now(self) -> str:
        when = self._epoch + timedelta(seconds=next(self._counter))
        return when.isoformat().replace("+00:00", ".000Z")

    def _new_commit(self, repo: FakeRepo, branch: str, files: dict[str, bytes], title: str, message: str) -> FakeCommit:
        parent = repo.refs.get(branch)
        date = self._now()
        oid = hashlib.sha1(f"{repo.repo_type}/{repo.repo_id}@{branch}:{date}:{title}".encode()).hexdigest()
        commit = FakeCommit(oid=oid, title=title, message=message, files=files, parent=parent, date=date)
        repo.commits[oid] = commit
        repo.refs[branch] = oid
        return commit

    def _get_repo(self, repo_type: str, repo_id: str) -> FakeRepo:
        if (repo_type, repo_id) not in self.repos:
            raise _HubError(404, f"Repository not found: {repo_type} {repo_id}", "RepoNotFound")
        return self.repos[(repo_type, repo_id)]

    @staticmethod
    def _base_url(request: httpx2.Request) -> str:
        # Build URLs on whatever endpoint the client used, so RepoUrl(url, endpoint=...) parses them.
        return f"{request.url.scheme}://{request.url.netloc.decode()}"

    def _web_url(self, request, repo_type: str, repo_id: str) -> str:
        return f"{self._base_url(request)}/{_URL_PREFIX[repo_type]}{repo_id}"

    def _whoami(self) -> dict:
        return {
            "type": "user",
            "id": "0" * 24,
            "name": self.username,
            "fullname": self.username,
            "email": f"{self.username}@example.com",
            "orgs": [],
            "auth": {"type": "access_token", "accessToken": {"displayName": "fake", "role": "write"}},
        }

    @staticmethod
    def _json(request: httpx2.Request) -> dict:
        try:
            return json.loads(request.content or b"{}")
        except json.JSONDecodeError as err:
            raise _HubError(400, f"Fake hub: invalid JSON body: {err}") from None

    def _validate_yaml(self, request) -> httpx2.Response:
        # The real endpoint checks the card metadata schema; we only check that it is valid YAML.
        content = self._json(request).get("content", "")
        match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", content, re.S)
        try:
            if match:
                yaml.safe_load(match.group(1))
        except yaml.YAMLError as err:
            return httpx2.Response(400, json={"errors": [{"message": str(err)}], "warnings": []})
        return httpx2.Response(200, json={"errors": [], "warnings": []})

    def _api_create_repo(self, request) -> httpx2.Response:
        payload = self._json(request)
        repo_type = payload.get("type") or "model"
        if repo_type not in REPO_TYPES:
            raise _HubError(400, f"Fake hub: unsupported repo type {repo_type!r}")
        repo_id = f"{payload.get('organization') or self.username}/{payload['name']}"
        url = self._web_url(request, repo_type, repo_id)
        if (repo_type, repo_id) in self.repos:
            # Same shape as the Hub: 409 with the url, which create_repo(exist_ok=True) relies on.
            raise _HubError(409, f"You already created this {repo_type} repo", url=url)
        private = payload.get("private") or payload.get("visibility") == "private"
        self.create_repo(repo_id, repo_type, private=bool(private))
        return httpx2.Response(200, json={"url": url, "name": repo_id, "id": repo_id})

    def _api_delete_repo(self, request) -> httpx2.Response:
        payload = self._json(request)
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or self.username}/{payload['name']}"
        self._get_repo(repo_type, repo_id)
        del self.repos[(repo_type, repo_id)]
        return httpx2.Response(200, json={})

    @staticmethod
    def _card_data(files: dict[str, bytes]) -> dict | None:
        # The Hub exposes the README.md YAML front matter as "cardData" in repo info.
        readme = files.get("README.md")
        if readme is None:
            return None
        match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", readme.decode("utf-8", "replace"), re.S)
        try:
            data = yaml.safe_load(match.group(1)) if match else None
        except yaml.YAMLError:
            return None
        return data if isinstance(data, dict) else None

    def _repo_info(self, request, repo: FakeRepo, revision: str) -> httpx2.Response:
        commit = repo.resolve(revision)
        with_blobs = request.url.params.get("blobs", "").lower() == "true"  # files_metadata=True
        siblings = []
        for path, content in sorted(commit.files.items()):
            sibling = {"rfilename": path}
            if with_blobs:
                sibling.update(size=len(content), blobId=self._git_oid(path, content))
                if is_lfs(path, content):
                    sibling["lfs"] = _lfs_info(content, "sha256")
            siblings.append(sibling)
        info = {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": commit.oid,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "createdAt": repo.created_at,
            "lastModified": commit.date,
            "siblings": siblings,
            "usedStorage": sum(len(c) for c in commit.files.values()),
        }
        if repo.repo_type == "model":
            info["modelId"] = repo.repo_id
        if (card_data := self._card_data(commit.files)) is not None:
            info["cardData"] = card_data
        return httpx2.Response(200, json=info)

    @staticmethod
    def _dirs(files: dict[str, bytes]) -> set[str]:
        """All folders implied by the file paths (git has no empty folders)."""
        return {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}

    @staticmethod
    def _git_oid(path: str, content: bytes) -> str:
        # For LFS files git stores (and the Hub reports) the pointer file, not the content.
        return git_blob_sha1(lfs_pointer(content) if is_lfs(path, content) else content)

    def _entry(self, commit: FakeCommit, path: str, is_dir: bool, expand: bool) -> dict:
        if is_dir:
            tree_oid = hashlib.sha1(f"tree:{commit.oid}:{path}".encode()).hexdigest()
            entry = {"type": "directory", "oid": tree_oid, "size": 0, "path": path}
        else:
            content = commit.files[path]
            entry = {"type": "file", "oid": self._git_oid(path, content), "size": len(content), "path": path}
            if is_lfs(path, content):
                entry["lfs"] = _lfs_info(content, "oid")
        if expand:
            # Simplification: report the head commit as the last commit of every path.
            entry["lastCommit"] = {"id": commit.oid, "title": commit.title, "date": commit.date}
        return entry

    def _tree(self, request, repo: FakeRepo, revision: str, path: str) -> httpx2.Response:
        commit = repo.resolve(revision)
        params = request.url.params
        recursive = params.get("recursive", "").lower() == "true"
        expand = params.get("expand", "").lower() == "true"
        dirs = self._dirs(commit.files)
        if path and path not in dirs:
            # Listing a file path or a missing folder: the Hub answers 404 EntryNotFound.
            raise _HubError(404, f"Fake hub: folder {path!r} not found at {revision}", "EntryNotFound")
        prefix = f"{path}/" if path else ""

        def wanted(p: str) -> bool:
            return p.startswith(prefix) and (recursive or "/" not in p[len(prefix) :])

        entries = [self._entry(commit, d, True, expand) for d in sorted(dirs) if wanted(d)]
        entries += [self._entry(commit, f, False, expand) for f in sorted(commit.files) if wanted(f)]
        return httpx2.Response(200, json=entries)

    def _paths_info(self, request, repo: FakeRepo, revision: str) -> httpx2.Response:
        commit = repo.resolve(revision)
        # Sent as a form: paths=a&paths=b&expand=false
        form = parse_qs((request.content or b"").decode(), keep_blank_values=True)
        expand = form.get("expand", ["false"])[0].lower() == "true"
        dirs = self._dirs(commit.files)
        entries = []
        for path in form.get("paths", []):
            path = path.strip("/")
            if path in commit.files:
                entries.append(self._entry(commit, path, False, expand))
            elif path in dirs:
                entries.append(self._entry(commit, path, True, expand))
            # Missing paths are silently omitted, like on the Hub.
        return httpx2.Response(200, json=entries)

    def _preupload(self, request, repo: FakeRepo, revision: str) -> httpx2.Response:
        commit = repo.resolve(revision)
        files = []
        for f in self._json(request).get("files", []):
            path, existing = f["path"], commit.files.get(f["path"])
            lfs = is_lfs(path, f.get("size", 0))
            # oid of the current remote version, in the form the client computes locally (sha256 for LFS,
            # git sha1 otherwise): lets create_commit / upload_folder skip unchanged files.
            oid = None
            if existing is not None:
                oid = hashlib.sha256(existing).hexdigest() if lfs else git_blob_sha1(existing)
            # "regular" files are then sent inline (base64) in the commit payload; "lfs" ones go first
            # through the LFS batch endpoint + PUT, and the commit only references their sha256.
            files.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        return httpx2.Response(200, json={"files": files, "commitOid": commit.oid})

    def _api_commit(self, request, repo: FakeRepo, revision: str) -> httpx2.Response:
        if revision not in repo.refs:
            if revision in repo.commits:
                raise _HubError(400, f"Fake hub: cannot commit on a commit oid ({revision}), only on a branch")
            raise _HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        lines = [json.loads(line) for line in (request.content or b"").splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise _HubError(400, "Fake hub: commit payload must start with a 'header' line")
        header = lines[0]["value"]
        if (parent := header.get("parentCommit")) and parent != repo.refs[revision]:
            raise _HubError(412, f"Fake hub: parentCommit {parent} is not the head of {revision}")

        snapshot = dict(repo.commits[repo.refs[revision]].files)
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value", {})
            path = value.get("path", "").strip("/")
            if key == "file":
                if value.get("encoding", "base64") != "base64":
                    raise _HubError(400, f"Fake hub: unsupported file encoding {value.get('encoding')!r}")
                snapshot[path] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                if path not in snapshot:
                    raise _HubError(404, f"Fake hub: cannot delete missing file {path!r}", "EntryNotFound")
                del snapshot[path]
            elif key == "deletedFolder":
                doomed = [p for p in snapshot if p.startswith(path.rstrip("/") + "/")]
                if not doomed:
                    raise _HubError(404, f"Fake hub: cannot delete missing folder {path!r}", "EntryNotFound")
                for p in doomed:
                    del snapshot[p]
            elif key == "lfsFile":
                if value.get("oid") not in self.lfs_objects:
                    raise _HubError(400, f"Fake hub: LFS object {value.get('oid')} for {path!r} was never uploaded")
                snapshot[path] = self.lfs_objects[value["oid"]]
            else:
                raise _HubError(400, f"Fake hub: unknown commit operation {key!r}")

        # Only now that all operations are valid: with create_pr=1, the commit goes to a new PR ref
        # branched off `revision` (what the client then exposes as CommitInfo.pr_num / pr_revision).
        pr_url, branch = None, revision
        if request.url.params.get("create_pr") == "1":
            pr_num = 1 + sum(ref.startswith("refs/pr/") for ref in repo.refs)
            branch = f"refs/pr/{pr_num}"
            repo.refs[branch] = repo.refs[revision]
            pr_url = f"{self._web_url(request, repo.repo_type, repo.repo_id)}/discussions/{pr_num}"
        commit = self._new_commit(repo, branch, snapshot, header.get("summary") or "", header.get("description") or "")
        commit_url = f"{self._web_url(request, repo.repo_type, repo.repo_id)}/commit/{commit.oid}"
        return httpx2.Response(
            200, json={"success": True, "commitOid": commit.oid, "commitUrl": commit_url, "pullRequestUrl": pr_url}
        )

    def _lfs_batch(self, request, repo_type: str, repo_id: str) -> httpx2.Response:
        self._get_repo(repo_type, repo_id)
        payload = self._json(request)
        if payload.get("operation") != "upload":
            raise _HubError(400, f"Fake hub: only LFS uploads are supported, got {payload.get('operation')!r}")
        objects = []
        for obj in payload.get("objects", []):
            entry = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.lfs_objects:  # no "actions" means "already stored": upload skipped
                entry["actions"] = {"upload": {"href": f"{self._base_url(request)}/fake-lfs/{obj['oid']}"}}
            objects.append(entry)
        return httpx2.Response(200, json={"transfer": "basic", "objects": objects, "hash_algo": "sha256"})

    def _lfs_put(self, request, oid: str) -> httpx2.Response:
        content = request.read()
        if hashlib.sha256(content).hexdigest() != oid:
            raise _HubError(400, f"Fake hub: uploaded content does not match LFS oid {oid}")
        self.lfs_objects[oid] = content
        return httpx2.Response(200)

    def _refs(self, repo: FakeRepo) -> httpx2.Response:
        def ref(name: str, full: str) -> dict:
            return {"name": name, "ref": full, "targetCommit": repo.refs[name]}

        branches = [ref(n, f"refs/heads/{n}") for n in repo.refs if not n.startswith("refs/")]
        prs = [ref(n, n) for n in repo.refs if n.startswith("refs/pr/")]
        return httpx2.Response(200, json={"branches": branches, "converts": [], "tags": [], "pullRequests": prs})

    def _list_commits(self, repo: FakeRepo, revision: str) -> httpx2.Response:
        items = [
            {
                "id": c.oid,
                "title": c.title,
                "message": c.message,
                "date": c.date,
                "authors": [{"user": self.username}],
            }
            for c in repo.history(revision)
        ]
        return httpx2.Response(200, json=items)

    def _create_branch(self, request, repo: FakeRepo, branch: str) -> httpx2.Response:
        if branch in repo.refs:
            raise _HubError(409, f"Reference already exists: {branch}")
        start = self._json(request).get("startingPoint") or "main"
        repo.refs[branch] = repo.resolve(start).oid
        return httpx2.Response(200, json={})

    def _resolve(self, request, repo_type: str, repo_id: str, revision: str, path: str) -> httpx2.Response:
        if request.method not in ("GET", "HEAD"):
            raise _HubError(405, f"Fake hub: {request.method} not allowed on resolve URLs")
        repo = self._get_repo(repo_type, repo_id)
        commit = repo.resolve(revision)
        # X-Repo-Commit is mandatory for hf_hub_download, also on 404 (used to cache the missing file).
        headers = {"X-Repo-Commit": commit.oid}
        if path not in commit.files:
            raise _HubError(404, f"Entry not found: {path} in {repo_id}@{revision}", "EntryNotFound", headers)
        content = commit.files[path]
        # Like the Hub: ETag is the git sha1 for regular files and the sha256 for LFS ones.
        etag = hashlib.sha256(content).hexdigest() if is_lfs(path, content) else git_blob_sha1(content)
        headers.update(
            {
                "ETag": f'"{etag}"',
                "Accept-Ranges": "bytes",
                "Content-Type": "application/octet-stream",
            }
        )
        status, body = 200, content
        if (range_header := request.headers.get("Range")) is not None and content:
            # Used by HfFileSystem reads and by resumed downloads. (An empty file is just sent whole.)
            status, body, headers["Content-Range"] = self._apply_range(range_header, content)
        headers["Content-Length"] = str(len(body))
        if request.method == "HEAD":
            return httpx2.Response(status, headers=headers)
        return httpx2.Response(status, headers=headers, content=body)

    @staticmethod
    def _apply_range(range_header: str, content: bytes) -> tuple[int, bytes, str]:
        total = len(content)
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", range_header.strip())
        if not match or match.groups() == ("", ""):
            raise _HubError(400, f"Fake hub: unsupported Range header {range_header!r}")
        first, last = match.groups()
        if first == "":  # suffix range: last N bytes
            start, end = max(total - int(last), 0), total - 1
        else:
            start, end = int(first), min(int(last), total - 1) if last else total - 1
        if start >= total or start > end:
            raise _HubError(416, f"Range {range_header} not satisfiable for {total} bytes")
        return 206, content[start : end + 1], f"bytes {start}-{end}/{total}"


# ---------------------------------------------------------------------- pytest wiring

# Module-level constants holding cache / token locations, computed from HF_HOME at import time.
# Changing the env var is not enough once the module is imported, so each is monkeypatched too.
_HUB_PATH_CONSTANTS = {
    "HF_HOME": "",
    "HF_HUB_CACHE": "hub",
    "HUGGINGFACE_HUB_CACHE": "hub",
    "HF_ASSETS_CACHE": "assets",
    "HUGGINGFACE_ASSETS_CACHE": "assets",
    "HF_TOKEN_PATH": "token",
    "HF_STORED_TOKENS_PATH": "stored_tokens",
    "AGENT_HARNESSES_PATH": ".agent_harnesses.json",
    "CHECK_FOR_UPDATE_DONE_PATH": ".check_for_update_done",
    "CHECK_FOR_SKILL_UPDATE_DONE_PATH": ".check_for_skill_update_done",
}
# Copies made with `from ..constants import X` (module, attribute, sub-path under HF_HOME, as Path?).
_COPIED_PATH_CONSTANTS = [
    ("huggingface_hub.utils._cache_manager", "HF_HUB_CACHE", "hub", False),
    ("huggingface_hub.utils._cache_assets", "HF_ASSETS_CACHE", "assets", False),
    ("datasets.config", "HF_CACHE_HOME", "", False),
    ("datasets.config", "HF_DATASETS_CACHE", "datasets", True),
    ("datasets.config", "HF_MODULES_CACHE", "modules", True),
    ("datasets.config", "DOWNLOADED_DATASETS_PATH", "datasets/downloads", True),
    ("datasets.config", "EXTRACTED_DATASETS_PATH", "datasets/downloads/extracted", True),
    ("transformers.utils.hub", "HF_MODULES_CACHE", "modules", False),
    ("transformers.dynamic_module_utils", "HF_MODULES_CACHE", "modules", False),
]


def _clear_hf_filesystem_cache() -> None:
    # fsspec caches HfFileSystem instances (with their directory listings and repo-exists cache) per
    # process: without this, a listing from a previous test's fake hub would be served again.
    from huggingface_hub import HfFileSystem

    HfFileSystem.clear_instance_cache()


@contextlib.contextmanager
def use_fake_hub(hf_home: str | os.PathLike, hub: FakeHub | None = None) -> Iterator[FakeHub]:
    """Route all huggingface_hub HTTP traffic to ``hub`` (a new :class:`FakeHub` by default) while inside.

    Also turns offline mode off, points every cache at ``hf_home`` and sets a dummy token; everything is
    restored on exit. The ``fake_hub`` fixture is a thin wrapper around this; use it directly for other
    scopes (e.g. a module-scoped fixture) or outside pytest.
    """
    # datasets computes its own offline flag at import time from the env (HF_HUB_OFFLINE=1 in tests):
    # import it now so that the patch below applies, instead of it being first imported (offline) inside.
    try:
        import datasets.config  # noqa: F401
    except ImportError:  # pragma: no cover - datasets is a dependency, but keep this usable without it
        pass

    hub = hub if hub is not None else FakeHub()
    home = Path(hf_home)
    with pytest.MonkeyPatch.context() as mp:
        # 1. Offline mode off. huggingface_hub and transformers read `huggingface_hub.constants.HF_HUB_OFFLINE`
        #    at call time (through `is_offline_mode()`); datasets keeps copies in `datasets.config`. The env
        #    vars are left alone on purpose: a subprocess would not use the fake transport, so it must
        #    stay offline.
        mp.setattr(constants, "HF_HUB_OFFLINE", False)
        if (ds_config := sys.modules.get("datasets.config")) is not None:
            mp.setattr(ds_config, "HF_HUB_OFFLINE", False)
            mp.setattr(ds_config, "HF_DATASETS_OFFLINE", False)

        # 2. Caches and token file under `home`, so the real cache is neither read nor polluted. Env vars
        #    cover modules imported later; already-imported modules computed constants at import time.
        mp.setenv("HF_HOME", str(home))
        for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_ASSETS_CACHE", "HF_DATASETS_CACHE", "HF_TOKEN_PATH"):
            mp.delenv(var, raising=False)
        for name, sub in _HUB_PATH_CONSTANTS.items():
            if hasattr(constants, name):
                mp.setattr(constants, name, str(home / sub) if sub else str(home))
        for module_name, attr, sub, as_path in _COPIED_PATH_CONSTANTS:
            module = sys.modules.get(module_name)
            if module is not None and hasattr(module, attr):
                value = home / sub if sub else home
                mp.setattr(module, attr, value if as_path else str(value))

        # 3. Dummy token, so nothing looks for a real login (HF_TOKEN wins over the token file; an OIDC
        #    resource would win over HF_TOKEN, hence it is removed).
        mp.setenv("HF_TOKEN", FAKE_TOKEN)
        mp.delenv("HF_OIDC_RESOURCE", raising=False)
        mp.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
        # hf_xet uploads/downloads over its own (Rust) HTTP stack, which the mock transport cannot see:
        # disabling it makes huggingface_hub fall back to the plain LFS protocol faked above.
        mp.setattr(constants, "HF_HUB_DISABLE_XET", True)

        # 4. Plug the fake in. set_client_factory closes the shared client, so the next get_session()
        #    builds one on our transport; the async factory is called on every get_async_session().
        original_factory = hf_http._GLOBAL_CLIENT_FACTORY  # normally hf_http.default_client_factory
        original_async_factory = hf_http._GLOBAL_ASYNC_CLIENT_FACTORY
        set_client_factory(hub.client)
        set_async_client_factory(hub.async_client)
        _clear_hf_filesystem_cache()
        try:
            yield hub
        finally:
            set_client_factory(original_factory)  # also closes the mock client
            set_async_client_factory(original_async_factory)
            _clear_hf_filesystem_cache()
        # Leaving the MonkeyPatch context restores constants and env vars.


@pytest.fixture
def fake_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeHub]:
    """A fresh, empty in-memory Hub for one test (see :func:`use_fake_hub` for what is patched)."""
    with use_fake_hub(tmp_path_factory.mktemp("hf_home")) as hub:
        yield hub
