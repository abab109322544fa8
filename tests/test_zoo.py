"""The model zoo: entries, cache folder, verified downloads (network mocked only at the URL edge)."""
from __future__ import annotations

import dataclasses
import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path
from types import MappingProxyType

import pytest
import torch
from conftest import make_tiny_generator
from fake_network_pickle import write_network_pickle

from pti import zoo
from pti.cli import main as cli_main
from pti.stylegan2 import CheckpointError, load, load_with_format, save


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("PTI_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    """A 3 MiB file served through a file:// URL (several 1 MiB chunks)."""
    path = tmp_path / "served" / "weights.bin"
    path.parent.mkdir()
    path.write_bytes(os.urandom(3 * 2**20 + 123))
    return path


def entry_for(path: Path, sha256: str | None) -> zoo.ZooEntry:
    return zoo.ZooEntry(name="testnet", filename="testnet.bin", resolution=16, description="test",
                        url=path.as_uri(), sha256=sha256)


def no_network(*args, **kwargs):
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


def test_zoo_entries() -> None:
    assert set(zoo.ZOO) >= {"demo", "ffhq"}
    ffhq = zoo.ZOO["ffhq"]
    assert ffhq.url == "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/ffhq.pkl"
    assert ffhq.resolution == 1024 and ffhq.filename.endswith(".pkl") and not ffhq.packaged
    assert ffhq.sha256 is None or (len(ffhq.sha256) == 64 and int(ffhq.sha256, 16) >= 0)
    demo = zoo.ZOO["demo"]
    assert demo.packaged and demo.url is None
    assert zoo.local_path(demo) == Path(zoo.__file__).parent / "assets" / "demo_generator.safetensors"
    with pytest.raises(zoo.ZooError, match="unknown zoo name 'nope'.*demo.*ffhq"):
        zoo.get_entry("nope")


def test_cache_dir_default_and_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PTI_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert zoo.cache_dir() == tmp_path / ".cache" / "pti"
    monkeypatch.setenv("PTI_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert zoo.cache_dir() == tmp_path / "elsewhere"
    assert zoo.local_path(zoo.ZOO["ffhq"]) == tmp_path / "elsewhere" / "ffhq.pkl"


def test_verified_download(cache: Path, payload: Path) -> None:
    sha = hashlib.sha256(payload.read_bytes()).hexdigest()
    result = zoo.download(entry_for(payload, sha), progress=False)
    assert result == zoo.DownloadResult(cache / "testnet.bin", sha, verified=True, downloaded=True)
    assert result.path.read_bytes() == payload.read_bytes()
    assert sorted(os.listdir(cache)) == ["testnet.bin"]  # no partial file left
    # a second call reuses the cached file without touching the network
    again = zoo.download(entry_for(payload.with_name("gone.bin"), sha), progress=False)
    assert again.downloaded is False and again.verified


def test_hash_mismatch_discards_the_download(cache: Path, payload: Path) -> None:
    with pytest.raises(zoo.ZooError, match="testnet.*sha256.*expected 0000.*discarded"):
        zoo.download(entry_for(payload, "0" * 64), progress=False)
    assert not cache.exists() or os.listdir(cache) == []


def test_unknown_hash_is_reported_unverified(cache: Path, payload: Path) -> None:
    sha = hashlib.sha256(payload.read_bytes()).hexdigest()
    with pytest.warns(zoo.UnverifiedDownloadWarning, match=f"UNVERIFIED.*{sha}"):
        result = zoo.download(entry_for(payload, None), progress=False)
    assert result.sha256 == sha and not result.verified


def test_offline_download_is_one_clear_line(cache: Path, payload: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises(zoo.ZooError) as info:
        zoo.download(entry_for(payload, None), progress=False)
    message = str(info.value)
    assert "\n" not in message and "offline" in message and str(cache / "testnet.bin") in message
    assert not (cache / "testnet.bin").exists()


def test_download_command_offline(cache: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    assert cli_main(["download", "ffhq", "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("pti download: error: cannot download ffhq from https://nvlabs-fi-cdn.nvidia.com/")
    assert len(err.splitlines()) == 1 and "offline" in err


def test_download_command_lists_entries(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["download"]) == 0
    out = capsys.readouterr().out
    assert "ffhq" in out and "demo" in out and zoo.ZOO["ffhq"].url in out


def test_ffhq_end_to_end_through_a_local_url(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """`pti download ffhq` then `load('ffhq')`, with the official URL replaced by a file:// one."""
    G = make_tiny_generator()
    served = write_network_pickle(G, tmp_path / "served-ffhq.pkl")
    ffhq = dataclasses.replace(zoo.ZOO["ffhq"], url=served.as_uri(),
                               sha256=hashlib.sha256(served.read_bytes()).hexdigest())
    monkeypatch.setattr(zoo, "ZOO", MappingProxyType({**zoo.ZOO, "ffhq": ffhq}))
    assert cli_main(["download", "ffhq", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"ffhq: downloaded: {cache / 'ffhq.pkl'}" in out and "(verified)" in out
    loaded, fmt = load_with_format("ffhq")
    assert fmt == "nvidia-pkl"
    z = torch.randn([2, 32], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(G(z, None, noise_mode="const"), loaded(z, None, noise_mode="const"))


def test_load_ffhq_offline_is_a_checkpoint_error(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises(CheckpointError, match="cannot download ffhq.*offline"):
        load("ffhq")


def test_demo_missing_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zoo, "ASSETS_DIR", tmp_path / "empty_assets")
    with pytest.raises(CheckpointError, match="demo_generator.safetensors: the 'demo' generator is not there"):
        load("demo")
    with pytest.raises(zoo.ZooError, match="not there"):
        zoo.download("demo")


def test_demo_loads_from_the_assets_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zoo, "ASSETS_DIR", tmp_path)
    G = make_tiny_generator()
    save(G, tmp_path / "demo_generator.safetensors")
    loaded, fmt = load_with_format("demo")
    assert fmt == "pti-safetensors"
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in G.state_dict().items())


def test_shipped_demo_generator_if_present() -> None:
    path = zoo.local_path(zoo.ZOO["demo"])
    if not path.is_file():
        pytest.skip(f"{path} is not in this checkout yet (trained separately)")
    G = load("demo")
    assert G.img_resolution == zoo.ZOO["demo"].resolution
