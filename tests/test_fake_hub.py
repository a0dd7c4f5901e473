"""Self-tests of the fake Hub fixture, through huggingface_hub / transformers / datasets public APIs only."""

import asyncio
import io
import os

import pytest
from huggingface_hub import HfApi, HfFileSystem, constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import _http as hf_http
from huggingface_hub.utils import get_async_session, get_session

from tests.fake_hub import FakeHub, fake_hub, use_fake_hub  # noqa: F401  (fake_hub: fixture import)

TINY_BERT = dict(
    vocab_size=50,
    hidden_size=8,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=16,
    max_position_embeddings=16,
)


def read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


# ---------------------------------------------------------------------- fixture plumbing


def test_fixture_switches_offline_off_and_isolates_cache(fake_hub: FakeHub, tmp_path_factory):
    assert constants.HF_HUB_OFFLINE is False
    assert constants.HF_HUB_CACHE.startswith(str(tmp_path_factory.getbasetemp()))
    assert HfApi().whoami()["name"] == "user"
    assert ("GET", "/api/whoami-v2") in fake_hub.requests


def test_use_fake_hub_restores_everything(tmp_path):
    def state():
        return (
            constants.HF_HUB_OFFLINE,
            constants.HF_HUB_CACHE,
            constants.HF_HUB_DISABLE_XET,
            os.environ.get("HF_TOKEN"),
            os.environ.get("HF_HOME"),
            hf_http._GLOBAL_CLIENT_FACTORY,
            hf_http._GLOBAL_ASYNC_CLIENT_FACTORY,
        )

    before = state()
    with use_fake_hub(tmp_path) as hub:
        assert constants.HF_HUB_OFFLINE is False
        assert HfApi().whoami()["name"] == hub.username
    assert state() == before
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        assert constants.HF_HUB_OFFLINE is True


def test_async_client_is_faked_too(fake_hub: FakeHub):
    async def whoami():
        async with get_async_session() as client:
            return (await client.get(f"{constants.ENDPOINT}/api/whoami-v2")).json()

    assert asyncio.run(whoami())["name"] == "user"


# ---------------------------------------------------------------------- huggingface_hub


def test_upload_folder_list_and_download_round_trip(fake_hub: FakeHub, tmp_path):
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    payload = {
        "a.txt": b"hello",  # regular file: sent inline in the commit
        "sub/b.bin": bytes(range(256)) * 10,  # LFS file: LFS batch + PUT, then referenced by sha256
        "empty.txt": b"",
    }
    for path, content in payload.items():
        (folder / path).write_bytes(content)

    api = HfApi()
    api.create_repo("user/repo")
    api.upload_folder(folder_path=folder, repo_id="user/repo", commit_message="upload")

    assert fake_hub.files("user/repo") == payload
    assert fake_hub.commits("user/repo")[0].title == "upload"
    assert sorted(api.list_repo_files("user/repo")) == sorted(payload)
    assert api.repo_exists("user/repo")
    assert not api.repo_exists("user/missing")

    assert read(hf_hub_download("user/repo", "sub/b.bin")) == payload["sub/b.bin"]
    snapshot = snapshot_download("user/repo")
    for path, content in payload.items():
        assert read(os.path.join(snapshot, path)) == content

    # Re-uploading the same folder is a no-op (preupload reports the remote oids).
    n_commits = len(fake_hub.commits("user/repo"))
    api.upload_folder(folder_path=folder, repo_id="user/repo")
    assert len(fake_hub.commits("user/repo")) == n_commits


def test_create_repo_upload_file_delete_file_and_errors(fake_hub: FakeHub):
    api = HfApi()
    assert api.create_repo("user/ds", repo_type="dataset").repo_id == "user/ds"
    # exist_ok=True relies on the 409 answer; without it the conflict must raise.
    assert api.create_repo("user/ds", repo_type="dataset", exist_ok=True).repo_id == "user/ds"
    with pytest.raises(HfHubHTTPError, match="409"):
        api.create_repo("user/ds", repo_type="dataset")

    csv = b"x,y\n1,2\n"
    info = api.upload_file(path_or_fileobj=csv, path_in_repo="data/train.csv", repo_id="user/ds", repo_type="dataset")
    api.upload_file(path_or_fileobj=io.BytesIO(b"tmp"), path_in_repo="tmp.txt", repo_id="user/ds", repo_type="dataset")
    api.delete_file("tmp.txt", repo_id="user/ds", repo_type="dataset")

    assert fake_hub.files("user/ds", repo_type="dataset") == {"data/train.csv": csv}
    assert fake_hub.files("user/ds", repo_type="dataset", revision=info.oid) == {"data/train.csv": csv}
    assert api.dataset_info("user/ds").sha == fake_hub.commits("user/ds", repo_type="dataset")[0].oid
    assert not api.repo_exists("user/ds")  # a dataset repo is not a model repo

    with pytest.raises(EntryNotFoundError):
        hf_hub_download("user/ds", "nope.txt", repo_type="dataset")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("user/ds", "data/train.csv", repo_type="dataset", revision="no-such-branch")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("user/other", "x.txt")

    # Unknown endpoints answer a clear 404; every request is logged, errors too.
    r = get_session().get(f"{constants.ENDPOINT}/api/spaces-hardware")
    assert r.status_code == 404 and "no route" in r.json()["error"]
    assert ("POST", "/api/datasets/user/ds/preupload/main") in fake_hub.requests
    assert fake_hub.errors[-1][:3] == ("GET", "/api/spaces-hardware", 404)


def test_branches_prs_and_history(fake_hub: FakeHub):
    api = HfApi()
    api.create_repo("user/b")
    api.upload_file(path_or_fileobj=b"v1", path_in_repo="f.txt", repo_id="user/b")
    api.create_branch("user/b", branch="dev")
    api.upload_file(path_or_fileobj=b"v2", path_in_repo="f.txt", repo_id="user/b", revision="dev")
    pr = api.upload_file(path_or_fileobj=b"v3", path_in_repo="f.txt", repo_id="user/b", create_pr=True)

    assert fake_hub.file("user/b", "f.txt") == b"v1"
    assert fake_hub.file("user/b", "f.txt", revision="dev") == b"v2"
    assert fake_hub.file("user/b", "f.txt", revision="refs/pr/1") == b"v3"
    assert pr.pr_num == 1
    refs = api.list_repo_refs("user/b", include_pull_requests=True)
    assert sorted(b.name for b in refs.branches) == ["dev", "main"]
    assert [p.ref for p in refs.pull_requests] == ["refs/pr/1"]
    assert read(hf_hub_download("user/b", "f.txt", revision="refs/pr/1")) == b"v3"
    commits = api.list_repo_commits("user/b", revision="dev")
    assert [c.commit_id for c in commits] == [c.oid for c in fake_hub.commits("user/b", revision="dev")]
    assert len(commits) == 3  # initial, v1 on main, v2 on dev


def test_seeded_repo_and_hf_file_system(fake_hub: FakeHub):
    fake_hub.commit("user/seeded", {"x/y.txt": "why", "z.txt": b"zed"}, repo_type="dataset")
    fs = HfFileSystem()
    root = "datasets/user/seeded"
    assert sorted(fs.ls(root, detail=False)) == [f"{root}/x", f"{root}/z.txt"]
    assert fs.read_bytes(f"{root}/x/y.txt") == b"why"
    with fs.open(f"{root}/z.txt", "rb") as f:
        f.seek(1)
        assert f.read() == b"ed"  # served with a Range request


# ---------------------------------------------------------------------- transformers / datasets


def test_transformers_push_to_hub_and_from_pretrained(fake_hub: FakeHub):
    import torch
    from transformers import AutoConfig, AutoModel, BertConfig, BertModel

    torch.manual_seed(0)
    model = BertModel(BertConfig(**TINY_BERT))
    model.push_to_hub("user/tiny")

    uploaded = fake_hub.files("user/tiny")
    assert {"config.json", "model.safetensors"} <= set(uploaded)

    assert AutoConfig.from_pretrained("user/tiny").hidden_size == 8
    reloaded = AutoModel.from_pretrained("user/tiny")
    assert isinstance(reloaded, BertModel)
    expected, actual = model.state_dict(), reloaded.state_dict()
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name


def test_datasets_push_to_hub_and_load_dataset(fake_hub: FakeHub):
    import pyarrow.parquet as pq
    from datasets import Dataset, load_dataset

    ds = Dataset.from_dict({"text": ["a", "b", "c"], "label": [0, 1, 0]})
    ds.push_to_hub("user/ds")

    files = fake_hub.files("user/ds", repo_type="dataset")
    assert sorted(files) == ["README.md", "data/train-00000-of-00001.parquet"]
    table = pq.read_table(io.BytesIO(files["data/train-00000-of-00001.parquet"]))
    assert table.to_pydict() == {"text": ["a", "b", "c"], "label": [0, 1, 0]}
    assert b"config_name: default" in files["README.md"]

    reloaded = load_dataset("user/ds", split="train")
    assert reloaded.to_dict() == ds.to_dict()
