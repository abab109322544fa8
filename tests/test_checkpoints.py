"""Checkpoint I/O: NVIDIA pickles (restricted unpickler), rosinality .pt, pti .safetensors.

Real checkpoints cannot be downloaded here, so every fixture is our own generator with
random weights written in each format; loading it back must reproduce its images exactly.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import pickle
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from conftest import make_tiny_generator
from fake_network_pickle import (fake_nvidia_modules, module_record, network_pickle_bytes, pickle_globals,
                                 write_network_pickle)
from safetensors.torch import save_file

from pti.cli import main as cli_main
from pti.stylegan2 import CheckpointError, Generator, UnsafeCheckpointError, load, load_with_format, save
from pti.stylegan2.checkpoints import META_FORMAT_VERSION, detect_format
from pti.stylegan2.nvidia_pickle import ALLOWED_GLOBALS
from pti.stylegan2.rosinality import (estimate_w_avg, from_rosinality_state_dict, to_rosinality_checkpoint,
                                      to_rosinality_state_dict)

ADA_LIKE_KWARGS = dict(z_dim=32, c_dim=0, w_dim=32, img_resolution=16, img_channels=3,
                       mapping_kwargs={"num_layers": 2},
                       synthesis_kwargs={"channel_base": 512, "channel_max": 32, "num_fp16_res": 2, "conv_clamp": 256})


def randomize(G: Generator, seed: int = 1) -> Generator:
    """Give every tensor (biases, noise strengths, w_avg, noise maps...) a random value, so each one shows in images."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in list(G.named_parameters()) + list(G.named_buffers()):
            if not name.endswith("resample_filter"):
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * (0.3 if "noise_strength" in name else 1.0))
    return G.eval()


def render(G: Generator, seed: int = 0) -> torch.Tensor:
    """Images [4, 3, R, R] from fixed z, truncation 0.7 (uses w_avg) and the stored noise maps."""
    z = torch.randn([4, G.z_dim], generator=torch.Generator().manual_seed(seed))
    c = torch.randn([4, G.c_dim], generator=torch.Generator().manual_seed(seed + 1)) if G.c_dim else None
    with torch.no_grad():
        ws = G.mapping(z, c, truncation_psi=0.7)
        return G.synthesis(ws, noise_mode="const")


@pytest.fixture
def source_generator() -> Generator:
    return randomize(Generator(**ADA_LIKE_KWARGS))


def assert_same_generator(G: Generator, H: Generator) -> None:
    assert H.init_kwargs == G.init_kwargs
    assert G.state_dict().keys() == H.state_dict().keys()
    for key, value in G.state_dict().items():
        assert torch.equal(value, H.state_dict()[key]), key
    assert torch.equal(render(G), render(H))


# ---------------------------------------------------------------------------------- native


def test_native_round_trip_is_exact(tmp_path: Path, source_generator: Generator) -> None:
    path = save(source_generator, tmp_path / "g.safetensors")
    G, fmt = load_with_format(path)
    assert fmt == "pti-safetensors"
    assert_same_generator(source_generator, G)
    assert sorted(os.listdir(tmp_path)) == ["g.safetensors"]  # the temporary file was renamed, nothing left


def test_native_save_refuses_other_extensions(tmp_path: Path, source_generator: Generator) -> None:
    with pytest.raises(ValueError, match=r"g\.pt.*\.safetensors"):
        save(source_generator, tmp_path / "g.pt")
    assert not (tmp_path / "g.pt").exists()


def test_native_file_from_a_newer_pti_is_refused(tmp_path: Path, source_generator: Generator) -> None:
    path = save(source_generator, tmp_path / "g.safetensors")
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    metadata[META_FORMAT_VERSION] = "99"
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(CheckpointError, match="upgrade pti"):
        load(path)


def test_safetensors_without_pti_metadata_is_refused(tmp_path: Path, source_generator: Generator) -> None:
    path = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in source_generator.state_dict().items()}, str(path))
    with pytest.raises(CheckpointError, match=r"plain\.safetensors.*pti generator file"):
        load(path)


# ---------------------------------------------------------------------------------- NVIDIA pickles


@pytest.mark.parametrize("protocol", [3, 4])
def test_nvidia_pickle_loads_to_identical_generator(tmp_path: Path, source_generator: Generator,
                                                    protocol: int) -> None:
    data = network_pickle_bytes(source_generator, protocol=protocol)
    # The fixture needs exactly the globals a genuine file needs, all on the allowed list.
    found = pickle_globals(data)
    core = {"torch_utils.persistence._reconstruct_persistent_obj", "dnnlib.util.EasyDict", "collections.OrderedDict",
            "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter", "torch.storage._load_from_bytes",
            "numpy.dtype"}
    assert core <= found <= ALLOWED_GLOBALS
    assert found & {"numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar"}
    assert ("builtins.set" in found) == (protocol < 4)  # protocol 4 pickles sets with an opcode
    path = tmp_path / "network-snapshot.pkl"
    path.write_bytes(data)
    G, fmt = load_with_format(path)
    assert fmt == "nvidia-pkl"
    assert_same_generator(source_generator, G)


def test_nvidia_pickle_conditional_resnet(tmp_path: Path) -> None:
    source = randomize(Generator(z_dim=16, c_dim=4, w_dim=32, img_resolution=8, img_channels=3,
                                 mapping_kwargs={"num_layers": 2},
                                 synthesis_kwargs={"channel_base": 256, "channel_max": 16, "architecture": "resnet"}))
    G = load(write_network_pickle(source, tmp_path / "cond.pkl"))
    assert_same_generator(source, G)


def test_nvidia_module_src_is_never_executed(tmp_path: Path, source_generator: Generator) -> None:
    marker = tmp_path / "module_src_ran"
    source = f"open({str(marker)!r}, 'w').write('pwned')\nimport os\nos.system('touch {marker}')\n"
    path = write_network_pickle(source_generator, tmp_path / "trojan.pkl", module_src=source)
    G = load(path)
    assert not marker.exists()
    assert_same_generator(source_generator, G)


class _SystemCall:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _EvalCall:
    def __reduce__(self):
        return eval, ("1 + 1",)


def test_plain_os_system_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "system_ran"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _SystemCall(marker)}))
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.pkl.*refused global '(posix|nt)\.system'"):
        load(path)
    assert not marker.exists()


def test_eval_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _EvalCall()}))
    with pytest.raises(UnsafeCheckpointError, match="refused global 'builtins.eval'"):
        load(path)


def tensorflow_network_pickle_bytes() -> bytes:
    """The start of a TensorFlow StyleGAN2 pickle (``(G, D, Gs)``, each a ``dnnlib.tflib.network.Network``
    rebuilt with NEWOBJ + BUILD from its ``__getstate__`` dict), written opcode by opcode: no module of
    that name exists here and nothing is unpickled by the real pickle."""
    def text(value: str) -> bytes:
        raw = value.encode()
        return b"\x8c" + bytes([len(raw)]) + raw  # SHORT_BINUNICODE

    def network(name: str) -> bytes:
        state = {"version": 4, "name": name, "build_func_name": "training.networks_stylegan2." + name,
                 "build_module_src": "raise RuntimeError('executed')\n"}
        body = b"".join(text(k) + (b"K" + bytes([v]) if isinstance(v, int) else text(v)) for k, v in state.items())
        # GLOBAL 'dnnlib.tflib.network Network', EMPTY_TUPLE, NEWOBJ, EMPTY_DICT, MARK, items, SETITEMS, BUILD
        return b"cdnnlib.tflib.network\nNetwork\n)\x81}(" + body + b"ub"
    return b"\x80\x02" + network("G_main") + network("D_stylegan2") + network("G_main") + b"\x87."  # TUPLE3, STOP


def test_tensorflow_stylegan2_pickle_is_named_with_how_to_convert_it(tmp_path: Path) -> None:
    """Issue 29 item 7a (PTI #51): an official TensorFlow StyleGAN2 pickle was refused as if it were malicious."""
    data = tensorflow_network_pickle_bytes()
    assert pickle_globals(data) == {"dnnlib.tflib.network.Network"}
    path = tmp_path / "stylegan2-ffhq-config-f.pkl"
    path.write_bytes(data)
    with pytest.raises(CheckpointError) as err:
        load(path)
    assert not isinstance(err.value, UnsafeCheckpointError)
    message = str(err.value)
    assert message.startswith(f"{path}: a TensorFlow StyleGAN/StyleGAN2 network pickle (it refers to "
                              "'dnnlib.tflib.network.Network')")
    assert f"python legacy.py --source={path} --dest=converted.pkl" in message
    assert "stylegan2-ada-pytorch" in message and "trust" not in message
    assert cli_main(["info", str(path)]) == 2


def test_unknown_class_inside_a_record_is_refused(tmp_path: Path, source_generator: Generator) -> None:
    def record_with_plain_module(fake):
        record = module_record(fake, source_generator, init_kwargs=source_generator.init_kwargs)
        record.meta["state"]["_modules"]["extra"] = torch.nn.Linear(2, 2)  # a plain torch module
        return record

    data = network_pickle_bytes(source_generator, g_ema_record=record_with_plain_module)
    path = tmp_path / "plain_module.pkl"
    path.write_bytes(data)
    with pytest.raises(UnsafeCheckpointError, match="torch.nn.modules.linear.Linear"):
        load(path)


class _BytesStorage:
    """Pickles as torch's storage does: ``torch.storage._load_from_bytes(payload)``."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def __reduce__(self):
        return torch.storage._load_from_bytes, (self.payload,)


@pytest.mark.parametrize("payload_kind", ["raw pickle", "legacy torch.save"])
def test_load_from_bytes_payload_that_runs_code_is_refused(tmp_path: Path, source_generator: Generator,
                                                           payload_kind: str) -> None:
    marker = tmp_path / "payload_ran"
    if payload_kind == "raw pickle":
        payload = pickle.dumps(_SystemCall(marker), protocol=2)
    else:
        buffer = io.BytesIO()
        torch.save(_SystemCall(marker), buffer, _use_new_zipfile_serialization=False)
        payload = buffer.getvalue()

    def record_with_payload(fake):
        record = module_record(fake, source_generator, init_kwargs=source_generator.init_kwargs)
        record.meta["state"]["_buffers"]["trap"] = _BytesStorage(payload)
        return record

    path = tmp_path / "payload.pkl"
    path.write_bytes(network_pickle_bytes(source_generator, g_ema_record=record_with_payload))
    assert "torch.storage._load_from_bytes" in pickle_globals(path.read_bytes())
    with pytest.raises(UnsafeCheckpointError, match=r"payload\.pkl.*_load_from_bytes.*weights-only"):
        load(path)
    assert not marker.exists()


def test_storage_saved_on_a_gpu_loads_on_cpu() -> None:
    """Genuine pickles were written on CUDA machines: their storage payloads say 'cuda:0'."""
    from pti.stylegan2.nvidia_pickle import _load_from_bytes, _rebuild_tensor_v2
    payload = torch.arange(3.0).storage().__reduce__()[1][0]  # torch's own legacy-format payload
    on_gpu = payload.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
    assert on_gpu != payload
    storage = _load_from_bytes(on_gpu)
    tensor = _rebuild_tensor_v2(storage, 0, (3,), (1,), False, OrderedDict())
    assert tensor.device.type == "cpu" and tensor.tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(CheckpointError, match="beyond its storage"):
        _rebuild_tensor_v2(storage, 1, (3,), (1,), False, OrderedDict())


def test_truncated_nvidia_pickle_names_file_and_format(tmp_path: Path, source_generator: Generator) -> None:
    data = network_pickle_bytes(source_generator)
    path = tmp_path / "cut.pkl"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pkl.*truncated.*NVIDIA StyleGAN2-ADA network pickle") as info:
        load(path)
    assert not isinstance(info.value, UnsafeCheckpointError)


@pytest.mark.parametrize("content", [b"this is not a pickle\n", pickle.dumps({"G": 1, "D": 2})])
def test_wrong_pkl_content_names_file_and_format(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "wrong.pkl"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"wrong\.pkl.*NVIDIA StyleGAN2-ADA network pickle"):
        load(path)


def test_nvidia_pickle_with_foreign_layout_is_refused(tmp_path: Path, source_generator: Generator) -> None:
    def record_missing_a_tensor(fake):
        record = module_record(fake, source_generator, init_kwargs=source_generator.init_kwargs)
        mapping = record.meta["state"]["_modules"]["mapping"]
        mapping.meta["state"]["_buffers"] = {}  # drop w_avg
        return record

    path = tmp_path / "foreign.pkl"
    path.write_bytes(network_pickle_bytes(source_generator, g_ema_record=record_missing_a_tensor))
    with pytest.raises(CheckpointError, match=r"foreign\.pkl.*missing: mapping\.w_avg"):
        load(path)


def test_fake_nvidia_modules_are_gone_after_pickling(source_generator: Generator) -> None:
    network_pickle_bytes(source_generator)
    with fake_nvidia_modules():  # would assert if a previous fixture had left them behind
        pass
    import sys
    assert "torch_utils.persistence" not in sys.modules and "dnnlib.util" not in sys.modules


# ---------------------------------------------------------------------------------- rosinality

# rosinality's g_ema keys for a 16x16 generator with 2 mapping layers, written from its
# documented module names (style / input / conv1 / to_rgb1 / convs / to_rgbs / noises).
ROSINALITY_KEYS_16PX = sorted(
    [f"style.{i}.{p}" for i in (1, 2) for p in ("weight", "bias")]
    + ["input.input"]
    + [f"{layer}.{p}" for layer in ("conv1", "convs.0", "convs.1", "convs.2", "convs.3")
       for p in ("conv.weight", "conv.modulation.weight", "conv.modulation.bias", "noise.weight", "activate.bias")]
    + ["convs.0.conv.blur.kernel", "convs.2.conv.blur.kernel"]
    + [f"{rgb}.{p}" for rgb in ("to_rgb1", "to_rgbs.0", "to_rgbs.1")
       for p in ("conv.weight", "conv.modulation.weight", "conv.modulation.bias", "bias")]
    + ["to_rgbs.0.upsample.kernel", "to_rgbs.1.upsample.kernel"]
    + [f"noises.noise_{j}" for j in range(5)])


def test_rosinality_key_names_and_shapes() -> None:
    G = randomize(make_tiny_generator())  # channels: 32 at every resolution up to 16
    sd = to_rosinality_state_dict(G)
    assert sorted(sd) == ROSINALITY_KEYS_16PX
    assert sd["input.input"].shape == (1, 32, 4, 4)
    assert sd["convs.2.conv.weight"].shape == (1, 32, 32, 3, 3)
    assert sd["conv1.noise.weight"].shape == (1,)
    assert sd["to_rgbs.1.bias"].shape == (1, 3, 1, 1)
    assert sd["noises.noise_4"].shape == (1, 1, 16, 16)
    assert sd["style.2.weight"].shape == (32, 32)
    kernel = torch.tensor([1.0, 3.0, 3.0, 1.0])
    assert torch.allclose(sd["convs.0.conv.blur.kernel"], torch.outer(kernel, kernel) / 64 * 4)  # measured equal
    # values land where the mapping says
    assert torch.equal(sd["style.1.weight"], G.mapping.fc0.weight)
    assert torch.equal(sd["convs.3.conv.modulation.bias"], G.synthesis.b16.conv1.affine.bias)
    assert torch.equal(sd["noises.noise_3"][0, 0], G.synthesis.b16.conv0.noise_const)
    assert sd["convs.1.noise.weight"].item() == G.synthesis.b8.conv1.noise_strength.item()


def test_rosinality_round_trip_through_file_is_exact(tmp_path: Path) -> None:
    source = randomize(Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3,
                                 mapping_kwargs={"num_layers": 3}, synthesis_kwargs={"channel_base": 256,
                                                                                       "channel_max": 32}))
    path = tmp_path / "550000.pt"
    torch.save(to_rosinality_checkpoint(source), path)
    G, fmt = load_with_format(path)
    assert fmt == "rosinality-pt"
    assert G.init_kwargs["synthesis_kwargs"]["channel_base"] == 256
    assert [G.synthesis.blocks()[i].conv1.weight.shape[0] for i in range(4)] == [32, 32, 16, 8]
    for key, value in source.state_dict().items():
        assert torch.equal(value, G.state_dict()[key]), key
    assert torch.equal(render(source), render(G))


def test_rosinality_channel_table_of_real_checkpoints() -> None:
    # rosinality 1024px, channel_multiplier 2: 512 up to 64px, then 256, 128, 64, 32.
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=1024, img_channels=3, mapping_kwargs={"num_layers": 1},
                  synthesis_kwargs={"channel_base": 32768, "channel_max": 512})
    sd = to_rosinality_state_dict(G)
    H = from_rosinality_state_dict(sd, G.mapping.w_avg)
    assert H.init_kwargs["synthesis_kwargs"]["channel_base"] == 32768
    assert H.init_kwargs["synthesis_kwargs"]["channel_max"] == 512
    assert [sd[f"convs.{2 * k}.conv.weight"].shape[1] for k in range(8)] == [512, 512, 512, 512, 256, 128, 64, 32]


def test_rosinality_training_snapshot_without_latent_avg(tmp_path: Path) -> None:
    source = randomize(make_tiny_generator())
    g_ema = to_rosinality_state_dict(source)
    snapshot = {"g": g_ema, "d": {"convs.0.0.weight": torch.randn(4, 3, 1, 1)}, "g_ema": g_ema,
                "g_optim": {"state": {}, "param_groups": [{"lr": 0.002, "params": [0, 1]}]},
                "d_optim": {"state": {}, "param_groups": []},
                "args": argparse.Namespace(size=16, latent=32, n_mlp=2, channel_multiplier=2, lr=0.002)}
    path = tmp_path / "snapshot.pt"
    torch.save(snapshot, path)
    with pytest.warns(UserWarning, match=r"snapshot\.pt.*no latent_avg.*estimated"):
        G = load(path)
    for key, value in source.state_dict().items():
        if key != "mapping.w_avg":
            assert torch.equal(value, G.state_dict()[key]), key
    # the estimate is the mean of mapped z: check against an independent sample
    z = torch.randn([20000, 32], generator=torch.Generator().manual_seed(123))
    with torch.no_grad():
        independent = G.mapping(z, None)[:, 0].mean(dim=0)
    spread = G.mapping(z, None)[:, 0].std(dim=0).max().item()
    # ~4 sigma of a 10000-mean (seeded, so the same draw on every CPU): measured max |diff| 2.2e-6 of the 6.8e-6
    # allowed, the same with the default kernels, ATEN_CPU_CAPABILITY=default and ONEDNN_MAX_CPU_ISA=SSE41
    assert torch.allclose(G.mapping.w_avg, independent, atol=4 * spread / 100)
    assert not torch.allclose(G.mapping.w_avg, torch.zeros(32))
    assert torch.equal(G.mapping.w_avg, estimate_w_avg(G))


def test_rosinality_file_asking_for_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": {}, "args": _SystemCall(marker)}, path)
    # the same reader as official e4e files (rosinality.torch_load_weights_only): it names the refused global
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.pt: refused by torch's weights-only loader: "
                                                   r"refused global '(posix|nt)\.system'"):
        load(path)
    assert not marker.exists()


def test_truncated_rosinality_file_names_file_and_format(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(to_rosinality_checkpoint(make_tiny_generator()), buffer)
    path = tmp_path / "cut.pt"
    path.write_bytes(buffer.getvalue()[:5000])
    with pytest.raises(CheckpointError, match=r"cut\.pt.*rosinality stylegan2-pytorch checkpoint"):
        load(path)


def test_pt_without_g_ema_names_file_and_format(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"model": OrderedDict(w=torch.zeros(2))}, path)
    with pytest.raises(CheckpointError, match=r"other\.pt.*no 'g_ema'.*rosinality"):
        load(path)


def test_rosinality_conversion_refuses_what_it_cannot_express() -> None:
    G = Generator(z_dim=16, c_dim=3, w_dim=16, img_resolution=8, img_channels=3, mapping_kwargs={"num_layers": 1},
                  synthesis_kwargs={"channel_base": 128, "channel_max": 16})
    with pytest.raises(CheckpointError, match="c_dim 0"):
        to_rosinality_state_dict(G)


# ---------------------------------------------------------------------------------- detection, CLI


def test_unknown_extension_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError, match=r"weights\.bin.*unknown checkpoint extension '\.bin'.*\.safetensors"):
        load(path)
    with pytest.raises(CheckpointError, match=r"nothere\.pkl: no such file"):
        load(tmp_path / "nothere.pkl")
    assert detect_format("a/b.PTH") == "rosinality-pt"


def test_truncated_native_file_names_file_and_format(tmp_path: Path, source_generator: Generator) -> None:
    path = save(source_generator, tmp_path / "g.safetensors")
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=r"g\.safetensors.*truncated.*pti generator file"):
        load(path)


@pytest.mark.parametrize("fmt", ["nvidia-pkl", "rosinality-pt", "pti-safetensors"])
def test_info_command_reports_every_format(tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    G = randomize(make_tiny_generator())
    if fmt == "nvidia-pkl":
        path = write_network_pickle(G, tmp_path / "g.pkl")
    elif fmt == "rosinality-pt":
        path = tmp_path / "g.pt"
        torch.save(to_rosinality_checkpoint(G), path)
    else:
        path = save(G, tmp_path / "g.safetensors")
    assert cli_main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    n_params = sum(p.numel() for p in G.parameters())
    assert f"format:         {fmt}" in out
    assert "resolution:     16x16" in out
    assert f"num_ws:         {G.num_ws}" in out and G.num_ws == 6
    assert "w_dim / z_dim:  32 / 32" in out
    assert f"parameters:     {n_params:,}" in out


@pytest.mark.parametrize("fmt", ["nvidia-pkl", "rosinality-pt", "pti-safetensors"])
def test_info_prints_constructor_arguments_that_rebuild_the_generator(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                      fmt: str) -> None:
    """Issue 29 item 12: `pti info` gives the constructor arguments, as a Python line and in JSON."""
    import ast

    G = randomize(make_tiny_generator(architecture="resnet", conv_clamp=256, num_fp16_res=2))
    if fmt == "nvidia-pkl":
        path = write_network_pickle(G, tmp_path / "g.pkl")
    elif fmt == "rosinality-pt":
        G = randomize(make_tiny_generator())  # rosinality's layout has no resnet/clamp options
        path = tmp_path / "g.pt"
        torch.save(to_rosinality_checkpoint(G), path)
    else:
        path = save(G, tmp_path / "g.safetensors")
    capsys.readouterr()
    assert cli_main(["info", str(path)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("constructor:"))
    call = line.split(":", 1)[1].strip()
    assert call.startswith("Generator(**{") and call.endswith("})")
    from_line = ast.literal_eval(call[len("Generator(**"):-1])
    assert cli_main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == fmt and info["num_ws"] == G.num_ws and info["parameters"] == sum(
        p.numel() for p in G.parameters())
    assert from_line == info["init_kwargs"]
    for kwargs in (from_line, info["init_kwargs"]):
        twin = Generator(**kwargs)
        if fmt != "rosinality-pt":
            assert kwargs == G.init_kwargs
        assert {k: v.shape for k, v in twin.state_dict().items()} == {k: v.shape for k, v in G.state_dict().items()}
        twin.load_state_dict(load(path).state_dict(), strict=True)


def test_saved_metadata_is_plain_json(tmp_path: Path, source_generator: Generator) -> None:
    from safetensors import safe_open
    path = save(source_generator, tmp_path / "g.safetensors")
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    assert json.loads(metadata["pti_init_kwargs"]) == source_generator.init_kwargs
    assert metadata["pti_format_version"] == "1"
    assert set(metadata) == {"pti_format", "pti_format_version", "pti_init_kwargs", "pti_version"}
