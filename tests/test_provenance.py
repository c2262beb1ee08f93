"""Input hashing for step records: each version of a file is hashed once, whoever asks and however it is linked."""

import hashlib
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from onmerge import provenance
from onmerge.provenance import file_hashes, file_sha256, hash_cache_dir, write_step_record


@pytest.fixture
def reads(monkeypatch):
    """Count the files actually read for hashing; files count as settled at once (no racy-clock wait)."""
    monkeypatch.setattr(provenance, "RACY_SECONDS", 0.0)
    counted: list[str] = []
    real = provenance._sha256_of

    def counting(handle):
        counted.append(os.path.basename(handle.name))
        return real(handle)

    monkeypatch.setattr(provenance, "_sha256_of", counting)
    return counted


def model_folder(root: Path) -> Path:
    folder = root / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(os.urandom(3 << 20))
    (folder / "config.json").write_text('{"hidden_size": 8}')
    (folder / "sub" / "tokenizer.json").write_text("{}")
    (folder / ".snakemake_timestamp").write_text("")
    return folder


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_folder_is_hashed_once_across_jobs(tmp_path, reads, monkeypatch):
    monkeypatch.setenv(provenance.HASH_CACHE_ENV, str(tmp_path / "cache"))
    folder = model_folder(tmp_path)
    expected = {name: sha256(folder / name) for name in ("config.json", "model.safetensors", "sub/tokenizer.json")}
    for job in range(3):  # three steps reading the same model, each writing its record
        out = tmp_path / f"eval{job}.json"
        out.write_text("{}")
        write_step_record(out, "evaluate", {}, {"model": folder}, seconds=1.0)
        record = json.loads((tmp_path / f"eval{job}.provenance.json").read_text())
        assert record["inputs"]["model"]["sha256"] == expected
    assert sorted(reads) == ["config.json", "model.safetensors", "tokenizer.json"]
    assert len(list((tmp_path / "cache").iterdir())) == 3


def test_the_default_cache_is_the_users_cache_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(provenance.HASH_CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert hash_cache_dir() == tmp_path / "onmerge" / "sha256"
    monkeypatch.setenv(provenance.HASH_CACHE_ENV, str(tmp_path / "elsewhere"))
    assert hash_cache_dir() == tmp_path / "elsewhere"


def test_a_symlinked_folder_shares_the_real_files_entries(tmp_path, reads):
    folder = model_folder(tmp_path)
    linked = tmp_path / "preset" / "sft" / "model"  # what fetch_model makes of a local folder: a link per item
    linked.mkdir(parents=True)
    for item in folder.iterdir():
        (linked / item.name).symlink_to(item.resolve())
    assert file_hashes(folder, tmp_path / "cache") == file_hashes(linked, tmp_path / "cache")
    assert len(reads) == 3


def rewritten_keeping_size_and_mtime(file: Path) -> None:
    """Same size, mtime set back (as `cp -p` or `rsync -t` would): only the ctime shows the change."""
    mtime = file.stat().st_mtime_ns
    time.sleep(0.05)  # past a coarse filesystem clock's tick
    file.write_bytes(bytes(reversed(file.read_bytes())))
    os.utime(file, ns=(mtime, mtime))


def test_a_link_cycle_is_walked_once(tmp_path, reads):
    folder = model_folder(tmp_path)
    (folder / "sub" / "back").symlink_to(folder)
    assert set(file_hashes(folder, tmp_path / "cache")) == {"config.json", "model.safetensors", "sub/tokenizer.json"}


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda file: file.write_bytes(file.read_bytes() + b"x"), id="size"),
        pytest.param(lambda file: os.utime(file, ns=(0, file.stat().st_mtime_ns - 10**9)), id="mtime"),
        pytest.param(rewritten_keeping_size_and_mtime, id="content-keeping-size-and-mtime"),
    ],
)
def test_a_changed_file_is_hashed_again(tmp_path, reads, change):
    file = tmp_path / "weights.bin"
    file.write_bytes(os.urandom(1 << 16))
    first = file_sha256(file, tmp_path / "cache")
    assert file_sha256(file, tmp_path / "cache") == first and len(reads) == 1
    change(file)
    assert file_sha256(file, tmp_path / "cache") == sha256(file)
    assert len(reads) == 2
    assert file_sha256(file, tmp_path / "cache") == sha256(file) and len(reads) == 2


def test_a_replaced_file_with_the_same_size_and_mtime_is_hashed_again(tmp_path, reads):
    """An atomic replacement (a new inode) that kept the old size and modification time is still a new version."""
    file = tmp_path / "weights.bin"
    file.write_bytes(b"a" * 4096)
    file_sha256(file, tmp_path / "cache")
    replacement = tmp_path / "new.bin"
    replacement.write_bytes(b"b" * 4096)
    mtime = file.stat().st_mtime_ns
    os.utime(replacement, ns=(mtime, mtime))
    os.replace(replacement, file)
    assert file_sha256(file, tmp_path / "cache") == sha256(file)
    assert len(reads) == 2


@pytest.mark.parametrize(
    "entry",
    [
        b"",
        b'{"path": ',
        b"\xff\xfe not json",
        b"[1, 2]",
        b'{"path": "PATH", "stat": {}, "sha256": "00"}',
        b'{"path": "PATH", "stat": "STAT", "sha256": 12}',
        b'{"path": "PATH", "stat": "STAT", "sha256": "' + b"g" * 64 + b'"}',
    ],
)
def test_a_corrupted_cache_entry_is_ignored_and_rewritten(tmp_path, reads, entry):
    file = tmp_path / "weights.bin"
    file.write_bytes(os.urandom(1 << 16))
    file_sha256(file, tmp_path / "cache")
    [stored] = (tmp_path / "cache").iterdir()
    valid = json.loads(stored.read_text())
    stored.write_bytes(
        entry.replace(b"PATH", valid["path"].encode()).replace(b'"STAT"', json.dumps(valid["stat"]).encode())
    )
    assert file_sha256(file, tmp_path / "cache") == sha256(file)
    assert len(reads) == 2
    assert json.loads(stored.read_text()) == valid
    assert file_sha256(file, tmp_path / "cache") == sha256(file) and len(reads) == 2


def test_a_file_changing_while_it_is_read_is_not_cached(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "RACY_SECONDS", 0.0)
    file = tmp_path / "weights.bin"
    file.write_bytes(b"a" * 4096)
    real = provenance._sha256_of

    def appended_during_the_read(handle):
        digest = real(handle)
        with file.open("ab") as writer:
            writer.write(b"more")
        return digest

    monkeypatch.setattr(provenance, "_sha256_of", appended_during_the_read)
    file_sha256(file, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_a_just_written_file_is_not_cached(tmp_path):
    """Within the racy window a same-size rewrite could keep the file's times: such a file is hashed every time."""
    file = tmp_path / "weights.bin"
    file.write_bytes(b"a" * 4096)
    assert file_sha256(file, tmp_path / "cache") == sha256(file)
    assert not (tmp_path / "cache").exists()


def test_an_unusable_cache_costs_time_not_the_digest(tmp_path, reads):
    cache = tmp_path / "cache"
    cache.write_text("a file where the folder should be")
    file = tmp_path / "weights.bin"
    file.write_bytes(b"a" * 4096)
    assert file_sha256(file, cache) == file_sha256(file, cache) == sha256(file)
    assert len(reads) == 2


def _hash_repeatedly(folder: str, cache: str) -> list[dict[str, str]]:
    provenance.RACY_SECONDS = 0.0  # a fresh worker process
    return [file_hashes(Path(folder), Path(cache)) for _ in range(20)]


def test_concurrent_jobs_share_the_cache_safely(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    for index in range(20):
        (folder / f"shard-{index}.bin").write_bytes(os.urandom(1 << 16))
    expected = {file.name: sha256(file) for file in folder.iterdir()}
    cache = tmp_path / "cache"
    with ProcessPoolExecutor(4) as pool:
        runs = [run for job in pool.map(_hash_repeatedly, [str(folder)] * 4, [str(cache)] * 4) for run in job]
    assert all(run == expected for run in runs)
    entries = sorted(cache.iterdir())
    assert len(entries) == 20, "one whole entry per file, no staging files left behind"
    assert {json.loads(entry.read_text())["sha256"] for entry in entries} == set(expected.values())
