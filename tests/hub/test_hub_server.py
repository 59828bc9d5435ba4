"""The fake Hub fixture itself: the huggingface_hub calls our push/pull tests rely on work against it."""

import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError


def test_upload_download_and_errors(fake_hub, tmp_path):
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"a": 1}')
    (folder / "model.safetensors").write_bytes(b"\x00" * 1000)  # goes through the LFS batch + PUT path
    (folder / "sub" / "notes.txt").write_text("hello")

    api = HfApi()
    assert api.whoami()["name"] == "tester"
    repo_id = api.create_repo("demo").repo_id
    assert repo_id == "tester/demo"
    assert api.create_repo("demo", exist_ok=True).repo_id == repo_id  # 409 is accepted with exist_ok
    commit = api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="first")
    assert commit.oid == fake_hub.repo(repo_id).sha
    assert fake_hub.files(repo_id)["model.safetensors"] == b"\x00" * 1000
    assert any(r.startswith("PUT /__lfs__/") for r in fake_hub.requests)
    assert sorted(api.list_repo_files(repo_id)) == ["config.json", "model.safetensors", "sub/notes.txt"]

    path = hf_hub_download(repo_id, "sub/notes.txt")
    assert open(path).read() == "hello"
    snapshot = snapshot_download(repo_id)
    assert open(f"{snapshot}/config.json").read() == '{"a": 1}'

    with pytest.raises(EntryNotFoundError):
        hf_hub_download(repo_id, "missing.json")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("tester/nope", "config.json")
    assert not fake_hub.unhandled, fake_hub.unhandled
