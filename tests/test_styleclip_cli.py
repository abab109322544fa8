"""`pti styleclip-prepare` and the StyleCLIP options of `pti edit` end to end, offline: a tiny generator,
a random ViT-B-32 (--random-clip), a synthetic official-layout mapper."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import make_tiny_generator
from pti.cli import main
from pti.editing.style_space import style_layers
from pti.stylegan2.checkpoints import save, weights_fingerprint


@pytest.fixture(scope="module")
def generator_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("g") / "tiny.safetensors"
    save(make_tiny_generator(resolution=64, seed=7, channel_max=4), path)
    return path


def test_prepare_computes_resumes_and_imports(generator_file, tmp_path, capsys):
    from pti.editing.styleclip.global_directions import cache_folder, load_prepared
    from pti.stylegan2.checkpoints import load

    cache = tmp_path / "cache"
    argv = ["styleclip-prepare", "--generator", str(generator_file), "--random-clip", "--cache", str(cache),
            "--stat-samples", "200", "--samples", "1", "--max-resolution", "4", "--threads", "1"]
    assert main(argv) == 0
    out = capsys.readouterr()
    assert "RANDOM weights" in out.err and "4 channels with a direction" in out.out
    G = load(generator_file)
    gd = load_prepared(G, cache, "ViT-B-32/random")
    assert gd.channel_dirs.shape[1] == 512
    # a second run finds every layer done
    assert main(argv) == 0
    # import StyleCLIP-layout files (a tiny fs3 in the layout, no S_mean_std: statistics are computed)
    conv_total = sum(l.channels for l in style_layers(G) if not l.is_torgb)
    np.save(tmp_path / "fs3.npy", np.random.default_rng(0).standard_normal([conv_total, 512]).astype(np.float32))
    assert main(["styleclip-prepare", "--generator", str(generator_file), "--import-ffhq", "--fs3",
                 str(tmp_path / "fs3.npy"), "--cache", str(cache), "--stat-samples", "100"]) == 0
    assert (cache_folder(cache, weights_fingerprint(G), "ViT-B-32") / "directions.pt").is_file()
    np.save(tmp_path / "bad.npy", np.zeros([3, 512], dtype=np.float32))
    assert main(["styleclip-prepare", "--generator", str(generator_file), "--import-ffhq", "--fs3",
                 str(tmp_path / "bad.npy"), "--cache", str(cache)]) == 2
    assert "does not fit this generator" in capsys.readouterr().err
