"""Atomic writes: all or nothing, ordinary permissions."""
from __future__ import annotations

import os
import stat

import pytest

from pti.io_utils import atomic_path, atomic_write_json, atomic_write_text


def test_atomic_write_permissions_follow_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text("hello", tmp_path / "a.txt")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").read_text() == "hello"
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644


def test_failed_write_leaves_nothing(tmp_path):
    (tmp_path / "b.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "b.txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert (tmp_path / "b.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.txt"]


def test_json_is_strict_non_finite_becomes_null(tmp_path):
    import json

    atomic_write_json({"psnr": float("inf"), "x": [1.5, float("nan")], "ok": 2.0}, tmp_path / "m.json")
    text = (tmp_path / "m.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    assert json.loads(text) == {"psnr": None, "x": [1.5, None], "ok": 2.0}


def test_atomic_torch_save_is_reproducible(tmp_path):
    """The same object saved twice to the same path gives the same bytes (the temporary file's random name
    used to be written into the zip archive, so `pti export` and pivot.pt differed on every run), and it
    loads back with weights_only."""
    import torch

    from pti.io_utils import atomic_torch_save

    obj = {"w": torch.arange(6.0).reshape(2, 3), "name": "pivot"}
    path = tmp_path / "p.pt"
    atomic_torch_save(obj, path)
    first = path.read_bytes()
    atomic_torch_save(obj, path)
    assert path.read_bytes() == first
    loaded = torch.load(path, weights_only=True)
    assert torch.equal(loaded["w"], obj["w"]) and loaded["name"] == "pivot"
