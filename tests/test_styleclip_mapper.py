"""StyleCLIP levels mappers (pti.editing.styleclip.mapper): a synthetic checkpoint in the official layout
(keys, {'state_dict', 'opts'}, weights stored divided by the lr multiplier) loads and edits exactly as the
paper's formula says; malformed files are refused with a clear error."""
from __future__ import annotations

import math

import pytest
import torch

from conftest import make_tiny_generator
from pti.editing.styleclip.mapper import (MAPPERS, MapperCheckpointError, PTI_STRENGTH, apply_mapper, load_mapper,
                                          mapper_entry)

DIM = 32  # the tiny generator's w_dim (official mappers: 512)


def _official_state(groups=("course", "medium", "fine"), dim=DIM, seed=0):
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name in groups:
        for i in range(1, 5):
            # as StyleCLIP's EqualLinear stores them: randn / lr_mul, and a (trained) bias
            state[f"mapper.{name}_mapping.mapping.{i}.weight"] = torch.randn([dim, dim], generator=g) / 0.01
            state[f"mapper.{name}_mapping.mapping.{i}.bias"] = torch.randn([dim], generator=g)
    state["decoder.style.1.weight"] = torch.zeros([2, 2])  # the bundled generator copy is ignored
    return state


def _save(path, state, **opts):
    torch.save({"state_dict": state, "opts": {"mapper_type": "LevelsMapper", "stylegan_size": 1024, **opts}}, path)
    return path


def _by_hand(state, name, rows):
    """The paper's MLP for one group, written out: PixelNorm over dim 1, then 4 x (EqualLinear + lrelu·√2)."""
    x = rows * torch.rsqrt(rows.pow(2).mean(dim=1, keepdim=True) + 1e-8)
    for i in range(1, 5):
        w = state[f"mapper.{name}_mapping.mapping.{i}.weight"] * (0.01 / math.sqrt(DIM))
        b = state[f"mapper.{name}_mapping.mapping.{i}.bias"] * 0.01
        x = torch.nn.functional.leaky_relu(x @ w.T + b, 0.2) * math.sqrt(2)
    return x


@pytest.mark.numerics
def test_official_layout_loads_and_edits(tmp_path):
    state = _official_state(groups=("course", "medium"))  # afro-like: no fine mapper
    path = _save(tmp_path / "afro.pt", state, no_fine_mapper=True)
    mapper, opts = load_mapper(path, w_dim=DIM)
    assert mapper.groups == ("course", "medium") and opts["no_fine_mapper"] is True
    G = make_tiny_generator(resolution=64)  # num_ws 10: rows 0-3, 4-7, 8-9
    w = G.mapping(torch.randn([2, G.z_dim]), None) + 0.1 * torch.randn([2, G.num_ws, DIM])
    edited = apply_mapper(mapper, w)
    expected = w.clone()
    expected[:, 0:4] += PTI_STRENGTH * _by_hand(state, "course", w[:, 0:4])
    expected[:, 4:8] += PTI_STRENGTH * _by_hand(state, "medium", w[:, 4:8])
    # the same float32 operations: measured bit-equal (AVX2, 1 thread); other kernels may round the matmuls apart
    assert torch.allclose(edited, expected, atol=1e-5)
    assert torch.equal(edited[:, 8:], w[:, 8:])  # no fine mapper: the fine rows are untouched
    assert torch.equal(apply_mapper(mapper, w, 0.0), w)  # strength 0: the codes themselves (the pivot, exactly)
    # a W pivot is broadcast to W+; the edited code renders
    w1 = w[:1, 0]
    out = apply_mapper(mapper, w1, num_ws=G.num_ws)
    assert out.shape == (1, G.num_ws, DIM)
    with torch.no_grad():
        img = G.synthesis(out, noise_mode="const")
    assert img.shape == (1, 3, 64, 64) and not torch.equal(img, G.synthesis(w1[:, None].expand(-1, G.num_ws, -1),
                                                                            noise_mode="const"))
    # the official PTI switches groups off per mapper
    mapper2, _ = load_mapper(_save(tmp_path / "full.pt", _official_state()), disabled=("fine",))
    assert mapper2.groups == ("course", "medium")


def test_malformed_mappers_are_refused(tmp_path):
    state = _official_state()
    broken = dict(state)
    del broken["mapper.medium_mapping.mapping.3.weight"]
    with pytest.raises(MapperCheckpointError, match="not the levels-mapper layout"):
        load_mapper(_save(tmp_path / "missing.pt", broken))
    with pytest.raises(MapperCheckpointError, match="only StyleCLIP's LevelsMapper"):
        load_mapper(_save(tmp_path / "single.pt", state, mapper_type="SingleMapper"))
    with pytest.raises(MapperCheckpointError, match="w_dim 512"):
        load_mapper(_save(tmp_path / "small.pt", state), w_dim=512)
    torch.save({"g_ema": {"x": torch.zeros(1)}}, tmp_path / "generator.pt")
    with pytest.raises(MapperCheckpointError, match="expected a StyleCLIP levels-mapper"):
        load_mapper(tmp_path / "generator.pt")
    torch.save({"state_dict": state, "opts": object()}, tmp_path / "code.pt")  # needs the full unpickler
    with pytest.raises(MapperCheckpointError, match="weights only"):
        load_mapper(tmp_path / "code.pt")
    with pytest.raises(MapperCheckpointError, match="no such"):
        load_mapper(tmp_path / "absent.pt")
    G = make_tiny_generator(resolution=16)  # num_ws 6: no fine rows
    mapper, _ = load_mapper(_save(tmp_path / "ok.pt", state))
    with pytest.raises(ValueError, match="num_ws > 8"):
        apply_mapper(mapper, torch.zeros([1, G.num_ws, DIM]))


def test_the_fourteen_official_names():
    assert sorted(MAPPERS) == sorted(["afro", "angry", "beyonce", "bobcut", "bowlcut", "curly_hair", "depp",
                                      "hilary_clinton", "mohawk", "purple_hair", "surprised", "taylor_swift",
                                      "trump", "zuckerberg"])
    assert mapper_entry("mohawk").no_fine and not mapper_entry("trump").no_fine
    with pytest.raises(KeyError, match="afro"):
        mapper_entry("smile")


def test_official_name_downloads_into_the_cache(monkeypatch, tmp_path):
    import torch.hub

    from pti.editing.styleclip.mapper import resolve_mapper

    source = _save(tmp_path / "src.pt", _official_state())
    seen = []

    def fake_download(url, dst, hash_prefix=None, progress=True):  # only the network is mocked
        seen.append(url)
        with open(dst, "wb") as f:
            f.write(source.read_bytes())

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    with pytest.warns(UserWarning, match="UNVERIFIED.*sha256"):
        path = resolve_mapper("mohawk", cache=tmp_path / "cache", progress=False)
    assert seen == [MAPPERS["mohawk"].url] and path.read_bytes() == source.read_bytes()
    assert resolve_mapper("mohawk", cache=tmp_path / "cache") == path  # cached: no second download
    assert len(seen) == 1
    load_mapper(path, w_dim=DIM)
