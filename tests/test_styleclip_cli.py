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


@pytest.fixture(scope="module")
def photo_folder(generator_file, tmp_path_factory):
    """A `pti run` photo folder: pivot.pt (W), tuned.safetensors (the generator with its affine layers moved, as
    PTI moves them), metrics.json with the tuning's noise settings, and RUN/summary.json naming the original."""
    import json

    from pti.core.pivot import Pivot
    from pti.stylegan2.checkpoints import load

    run = tmp_path_factory.mktemp("run")
    (run / "summary.json").write_text(json.dumps({"generator": str(generator_file)}))
    photo = run / "photo"
    photo.mkdir()
    G = load(generator_file)
    with torch.no_grad():
        w = G.mapping(torch.randn([1, G.z_dim], generator=torch.Generator().manual_seed(3)), None)
        for name, p in G.named_parameters():
            if name.startswith("synthesis.") and name.endswith(".weight"):
                p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))))
    Pivot(w=w, noise=[], space="w").save(photo / "pivot.pt")
    save(G, photo / "tuned.safetensors")
    (photo / "metrics.json").write_text(json.dumps({"config": {"tuning": {"noise_mode": "const",
                                                                           "use_pivot_noise": False}}}))
    return photo


def _mapper_file(path, dim=32):
    g = torch.Generator().manual_seed(0)
    state = {f"mapper.{group}_mapping.mapping.{i}.{kind}": (torch.randn([dim, dim], generator=g) / 0.01
                                                             if kind == "weight" else torch.randn([dim], generator=g))
             for group in ("course", "medium", "fine") for i in range(1, 5) for kind in ("weight", "bias")}
    torch.save({"state_dict": state, "opts": {"mapper_type": "LevelsMapper"}}, path)
    return path


def test_edit_with_a_mapper_writes_w_and_pti_rows(photo_folder, tmp_path, capsys, monkeypatch):
    """The grid comes from the writer of every edit (pti.editing.run_edits.write_run_edits): its rows are named by
    grid_row_names, as pti run's (issue 33; they were "W: <key>"), its columns by the mapper's k."""
    import json

    from PIL import Image

    from pti import images
    from pti.core.pivot import Pivot
    from pti.editing.run_edits import grid_row_names

    grids = []
    save_grid = images.save_grid

    def recording_save_grid(rows, path, row_labels=None, col_labels=None, **kwargs):
        grids.append((path, row_labels, col_labels))
        return save_grid(rows, path, row_labels=row_labels, col_labels=col_labels, **kwargs)

    monkeypatch.setattr(images, "save_grid", recording_save_grid)
    mapper = _mapper_file(tmp_path / "curly.pt")
    assert main(["edit", str(photo_folder), "--mapper", str(mapper), "--mapper-strength", "0.5"]) == 0
    edits = photo_folder / "edits"
    orig, pti = grid_row_names(Pivot.load(photo_folder / "pivot.pt"))
    assert grids == [(edits / "mapper_curly.png", [f"{orig}: mapper_curly", f"{pti}: mapper_curly"],
                      ["k=0", "k=0.5"])]
    assert orig == "W inversion (orig. G)"
    grid = Image.open(edits / "mapper_curly.png")
    assert grid.size[1] >= 2 * 128  # a W row and a PTI row
    k0, k1 = (np.asarray(Image.open(edits / f"mapper_curly_{s}.png")) for s in ("0", "0.5"))
    assert not np.array_equal(k0, k1)
    record = json.loads((edits / "mapper_curly.json").read_text())
    assert record["method"] == "mapper" and record["strengths"] == [0.0, 0.5]
    # k = 0 is the PTI reconstruction: the tuned generator at the pivot, rendered as the run renders it
    from pti.images import to_uint8_array
    from pti.core.pivot import Pivot
    from pti.stylegan2.checkpoints import load

    tuned = load(photo_folder / "tuned.safetensors")
    with torch.no_grad():
        recon = tuned.synthesis(Pivot.load(photo_folder / "pivot.pt").w, noise_mode="const")
    assert np.array_equal(k0, to_uint8_array(recon[0]))
    # --out: the grid is written there only (once), and the record says where (the same edit: the same k)
    (edits / "mapper_curly.png").unlink()
    out = tmp_path / "elsewhere" / "grid.png"
    assert main(["edit", str(photo_folder), "--mapper", str(mapper), "--mapper-strength", "0.5", "--out",
                 str(out)]) == 0
    assert out.is_file() and not (edits / "mapper_curly.png").exists() and grids[-1][0] == out
    assert json.loads((edits / "mapper_curly.json").read_text())["grid"] == str(out.resolve())
    assert main(["edit", str(photo_folder), "--mapper", str(tmp_path / "nothing.pt")]) == 2
    assert "no such mapper" in capsys.readouterr().err
    assert main(["edit", str(photo_folder)]) == 2
    assert "--text" in capsys.readouterr().err


def test_text_edit_needs_prepared_directions(photo_folder, tmp_path, capsys):
    assert main(["edit", str(photo_folder), "--text", "a smiling face", "--random-clip",
                 "--styleclip-cache", str(tmp_path / "empty")]) == 2
    assert "pti styleclip-prepare --generator" in capsys.readouterr().err


@pytest.mark.slow  # 40-98 s measured on the shared cores: 2 x 79 prompt templates through a random ViT-B-32 text encoder
def test_text_edit_with_global_directions(generator_file, photo_folder, tmp_path, capsys):
    import json

    from PIL import Image

    cache = tmp_path / "cache"
    assert main(["styleclip-prepare", "--generator", str(generator_file), "--random-clip", "--cache", str(cache),
                 "--stat-samples", "200", "--samples", "1", "--max-resolution", "4"]) == 0
    assert main(["edit", str(photo_folder), "--text", "a smiling face", "--beta", "auto", "--random-clip",
                 "--styleclip-cache", str(cache)]) == 0
    edits = photo_folder / "edits"
    record = json.loads((edits / "text_a_smiling_face.json").read_text())
    assert record["method"] == "global" and "4 channels" in record["description"]  # b4.conv1 only: auto keeps all
    a0 = np.asarray(Image.open(edits / "text_a_smiling_face_0.png"))
    a1 = np.asarray(Image.open(edits / "text_a_smiling_face_4.1.png"))
    assert not np.array_equal(a0, a1)
    assert "RANDOM weights" in capsys.readouterr().err
    assert main(["edit", str(photo_folder), "--text", "a smiling face", "--beta", "5", "--random-clip",
                 "--styleclip-cache", str(cache)]) == 2
    assert "largest beta that keeps a channel" in capsys.readouterr().err


def test_a_styleclip_edit_of_another_beta_is_refused_without_overwrite(generator_file, photo_folder, tmp_path,
                                                                       capsys, monkeypatch):
    """The rule of `pti edit --direction` (issue 29 item 5) for StyleCLIP: `--text T --beta 0.1`, then `--beta 0.2`,
    replaced edits/text_T_*.png, its grid and its record silently. Now an output that holds another edit is refused
    (exit 2, one line naming the file and --overwrite, nothing written; decided before rendering by the JSON record,
    after rendering by an image's pixels), the same edit again is written, and --overwrite replaces."""
    import io
    import json
    import shutil

    from PIL import Image

    from pti.editing import run_edits
    from pti.editing.styleclip import clip_model
    from pti.editing.styleclip.global_directions import load_prepared, text_direction
    from pti.stylegan2.checkpoints import load

    # 2 prompt templates instead of 79: 0.35 s instead of 13 s per text encoding (measured); the random CLIP has
    # the same weights in every call (clip_model.RANDOM_CLIP_SEED)
    monkeypatch.setattr(clip_model, "imagenet_templates", lambda: ["a photo of a {}.", "a bad photo of a {}."])
    cache = tmp_path / "cache"
    assert main(["styleclip-prepare", "--generator", str(generator_file), "--random-clip", "--cache", str(cache),
                 "--stat-samples", "200", "--samples", "1", "--max-resolution", "4"]) == 0
    clip = clip_model.load_clip(pretrained=None)
    relevance = load_prepared(load(generator_file), cache, clip.key).relevance(
        text_direction(clip, "a smiling face", "a face")).abs()
    assert int((relevance > 0).sum()) >= 2  # so that beta just under the largest drops a channel: another edit
    shutil.copytree(photo_folder.parent, tmp_path / "run", ignore=shutil.ignore_patterns("edits"))
    photo = tmp_path / "run" / photo_folder.name
    edits = photo / "edits"
    renders = []
    render_pair = run_edits.render_pair
    monkeypatch.setattr(run_edits, "render_pair", lambda *a, **k: renders.append(1) or render_pair(*a, **k))

    def edit(beta, *more):
        return main(["edit", str(photo), "--text", "a smiling face", "--random-clip", "--styleclip-cache", str(cache),
                     "--beta", beta, *more])

    def files():
        return {p.name: p.read_bytes() for p in sorted(edits.iterdir())}

    def pixels(data):
        return np.asarray(Image.open(io.BytesIO(data)))

    all_channels, one_channel = "0", repr(0.99 * float(relevance.max()))
    assert edit(all_channels) == 0 and len(renders) == 1
    first = files()
    assert set(first) == {"text_a_smiling_face.png", "text_a_smiling_face_0.png", "text_a_smiling_face_4.1.png",
                          "text_a_smiling_face.json"}
    with Image.open(edits / "text_a_smiling_face_4.1.png") as img:
        record = json.loads(img.text["pti-edit"])
    assert record["styleclip"]["beta"] == 0.0 and record["styleclip"]["clip"] == "ViT-B-32/random"
    capsys.readouterr()
    # another beta: refused by the JSON record, before rendering; one line naming the file and --overwrite
    assert edit(one_channel) == 2 and len(renders) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("pti edit")]
    assert len(err) == 1 and str(edits / "text_a_smiling_face.json") in err[0] and "--overwrite" in err[0]
    assert files() == first
    # the same edit again: written (the same record), the same bytes
    assert edit(all_channels) == 0 and len(renders) == 2 and files() == first
    # --overwrite replaces: another edited image (one channel moved instead of all), the unedited one the same
    assert edit(one_channel, "--overwrite") == 0
    second = files()
    assert second["text_a_smiling_face_4.1.png"] != first["text_a_smiling_face_4.1.png"]
    assert json.loads(second["text_a_smiling_face.json"])["beta"] == float(one_channel)
    assert np.array_equal(pixels(second["text_a_smiling_face_0.png"]), pixels(first["text_a_smiling_face_0.png"]))
    # without the JSON record, the images decide: rendered, another image's pixels differ, refused, nothing written
    (edits / "text_a_smiling_face.json").unlink()
    del second["text_a_smiling_face.json"]
    capsys.readouterr()
    assert edit(all_channels) == 2 and len(renders) == 4
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("pti edit")]
    assert len(err) == 1 and str(edits / "text_a_smiling_face_4.1.png") in err[0] and "--overwrite" in err[0]
    assert files() == second and not list(edits.glob(".*"))  # alpha 0, the same pixels, was not the refusal


def test_text_edit_by_latent_optimisation(photo_folder, capsys):
    assert main(["edit", str(photo_folder), "--text", "a smiling face", "--method", "optimize", "--steps", "2",
                 "--random-clip"]) == 0
    edits = photo_folder / "edits"
    assert (edits / "optimize_a_smiling_face_0.png").is_file() and (edits / "optimize_a_smiling_face_1.png").is_file()
    assert "latent optimisation" in capsys.readouterr().out


def test_pti_run_with_a_mapper_edit(generator_file, tmp_path, monkeypatch):
    """`pti run --edit mapper:PATH` renders it beside the W edits: files in the manifest, k = 0 is the
    reconstruction. A text edit without CLIP weights offline fails before any photo, naming the file."""
    import json

    from PIL import Image

    from pti.editing.run_edits import resolve_run_edits
    from pti.images import write_image
    from pti.stylegan2.checkpoints import load

    monkeypatch.setenv("PTI_CACHE_DIR", str(tmp_path / "cache"))
    G = load(generator_file)
    photos = tmp_path / "photos"
    photos.mkdir()
    with torch.no_grad():
        write_image(G.synthesis(G.mapping(torch.randn([1, G.z_dim]), None), noise_mode="const")[0],
                    photos / "face.png")
    mapper = _mapper_file(tmp_path / "curly.pt")
    run = tmp_path / "run"
    rc = main(["run", str(photos), "--output", str(run), "--generator", str(generator_file), "--edit",
               f"mapper:{mapper}", "--edit", "sefa:0:0,2", "--device", "cpu", "--no-align", "--quiet",
               "--inv-steps", "2", "--tune-steps", "2", "--inv-w-avg-samples", "100", "--inv-perceptual-net",
               "effnet-lite0", "--tune-perceptual-net", "effnet-lite0"])
    assert rc == 0
    photo = run / "face"
    files = json.loads((photo / "metrics.json").read_text())["files"]
    assert {"edits/mapper_curly_0.png", "edits/mapper_curly_0.06.png", "edits/grid.png"} <= set(files)
    recon = np.asarray(Image.open(photo / "reconstruction.png"))
    assert np.array_equal(np.asarray(Image.open(photo / "edits" / "mapper_curly_0.png")), recon)
    assert not np.array_equal(np.asarray(Image.open(photo / "edits" / "mapper_curly_0.06.png")), recon)

    import open_clip

    def offline(name, pretrained=None, **kw):  # the network is the only thing mocked
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(open_clip, "create_model", offline)
    with pytest.raises(ValueError, match="text:a smiling face.*open_clip_model.safetensors"):
        resolve_run_edits(["text:a smiling face"], G)
