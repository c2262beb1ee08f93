"""Atomic outputs: whole or absent, and a failure never destroys the previous result."""

import json

import pytest

from onmerge.atomic import atomic_dir, write_json, write_text


def test_folder_appears_whole_and_replaces_the_old_one(tmp_path):
    out = tmp_path / "model"
    with atomic_dir(out) as staging:
        (staging / "a.txt").write_text("first")
        assert not out.exists(), "nothing is visible before the body finishes"
    with atomic_dir(out) as staging:
        (staging / "b.txt").write_text("second")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"], "no staging or replaced folder left behind"


def test_failure_keeps_the_previous_result_and_leaves_nothing_else(tmp_path):
    out = tmp_path / "model"
    with atomic_dir(out) as staging:
        (staging / "good.txt").write_text("kept")
    with pytest.raises(RuntimeError, match="killed"), atomic_dir(out) as staging:
        (staging / "half.txt").write_text("partial")
        raise RuntimeError("killed")
    assert (out / "good.txt").read_text() == "kept"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_files_are_replaced_atomically(tmp_path):
    path = tmp_path / "deep" / "metrics.json"
    write_json(path, {"a": 1})
    write_text(path, "not json")
    assert path.read_text() == "not json"
    write_json(path, {"b": [1, 2]})
    assert json.loads(path.read_text()) == {"b": [1, 2]}
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]
