"""The model zoo: entries, cache folder, verified downloads (network mocked only at the URL edge)."""
from __future__ import annotations

import dataclasses
import hashlib
import http.server
import os
import threading
import urllib.error
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


def go_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every URL fails as without a network: the mock sits where torch.hub's downloader opens it."""
    import torch.hub

    monkeypatch.setattr(torch.hub, "urlopen", no_network)


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
    go_offline(monkeypatch)
    with pytest.raises(zoo.ZooError) as info:
        zoo.download(entry_for(payload, None), progress=False)
    message = str(info.value)
    assert "\n" not in message and "offline" in message and str(cache / "testnet.bin") in message
    assert not (cache / "testnet.bin").exists()


def test_download_command_offline(cache: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    go_offline(monkeypatch)
    assert cli_main(["download", "ffhq", "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("pti download: error: cannot download ffhq from https://nvlabs-fi-cdn.nvidia.com/")
    assert len(err.splitlines()) == 1 and "offline" in err


def test_download_command_lists_entries(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["download"]) == 0
    out = capsys.readouterr().out
    assert "ffhq" in out and "demo" in out and zoo.ZOO["ffhq"].url in out


def download_served(name: str, served: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                    sha256: str | None = None) -> str:
    """`pti download NAME` with the entry's URL replaced by ``served``'s file:// URL; returns its stdout."""
    entry = dataclasses.replace(zoo.ZOO[name], url=served.as_uri(), sha256=sha256)
    monkeypatch.setattr(zoo, "ZOO", MappingProxyType({**zoo.ZOO, name: entry}))
    assert cli_main(["download", name, "--quiet"]) == 0
    return capsys.readouterr().out


def test_ffhq_end_to_end_through_a_local_url(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """`pti download ffhq` then `load('ffhq')`, with the official URL replaced by a file:// one."""
    G = make_tiny_generator()
    served = write_network_pickle(G, tmp_path / "served-ffhq.pkl")
    out = download_served("ffhq", served, monkeypatch, capsys, sha256=hashlib.sha256(served.read_bytes()).hexdigest())
    assert f"ffhq: downloaded: {cache / 'ffhq.pkl'}" in out and "(verified)" in out
    loaded, fmt = load_with_format("ffhq")
    assert fmt == "nvidia-pkl"
    z = torch.randn([2, 32], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(G(z, None, noise_mode="const"), loaded(z, None, noise_mode="const"))


def test_load_ffhq_offline_is_a_checkpoint_error(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    go_offline(monkeypatch)
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


def test_e4e_entry() -> None:
    e4e = zoo.ZOO["e4e"]
    assert e4e.kind == "encoder" and e4e.filename == "e4e_ffhq_encode.pt" and e4e.resolution == 1024
    drive_id = "1cUv_reLE6k3604or78EranS7XzuVMWeO"  # the FFHQ encoder of the omertov/encoder4editing README
    assert e4e.url.startswith("https://drive.usercontent.google.com/download?") and f"id={drive_id}" in e4e.url
    assert e4e.page == f"https://drive.google.com/file/d/{drive_id}/view" and not e4e.packaged
    assert {entry.kind for entry in zoo.ZOO.values()} == {"generator", "encoder"}


class _WebPage(http.server.BaseHTTPRequestHandler):
    """What Google Drive sends instead of a large file when its quota is exceeded: a 200 HTML page."""

    def do_GET(self) -> None:
        body = b"<!DOCTYPE html><html><title>Google Drive - Quota exceeded</title></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_a_web_page_instead_of_the_file_is_refused(cache: Path) -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), _WebPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        entry = dataclasses.replace(zoo.ZOO["e4e"], url=f"http://127.0.0.1:{server.server_port}/download?id=x")
        with pytest.raises(zoo.ZooError) as info:
            zoo.download(entry, progress=False)
    finally:
        server.shutdown()
        thread.join()
    message = str(info.value)
    assert "answered with a web page instead of the file" in message and "\n" not in message
    assert f"open {zoo.ZOO['e4e'].page} in a browser, download e4e_ffhq_encode.pt" in message
    assert str(cache / "e4e_ffhq_encode.pt") in message
    assert not cache.exists() or os.listdir(cache) == []  # nothing half-written


def test_e4e_offline_names_the_page_to_use_by_hand(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    go_offline(monkeypatch)
    with pytest.raises(zoo.ZooError, match=r"offline.*elsewhere \(from https://drive\.google\.com/file/d/.*/view\)"):
        zoo.download("e4e", progress=False)


def test_e4e_end_to_end_through_a_local_url(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """`pti download e4e` then `load_e4e('e4e')`, with the Drive URL replaced by a file:// one."""
    from test_encoders import make_small, write_official_checkpoint

    from pti.encoders import load_e4e_with_format

    enc = make_small(seed=7)
    out = download_served("e4e", write_official_checkpoint(tmp_path / "served-e4e.pt", enc), monkeypatch, capsys)
    assert f"e4e: downloaded: {cache / 'e4e_ffhq_encode.pt'}" in out and "UNVERIFIED" in out
    loaded, fmt = load_e4e_with_format("e4e")
    assert fmt == "e4e-pt"
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(enc(x), loaded(x))


def test_generator_loader_refuses_encoder_zoo_names_before_downloading(tmp_path, monkeypatch):
    # `pti.stylegan2.load("e4e")` must not fetch a 1 GB encoder and then fail on its layout
    from pti.stylegan2.checkpoints import CheckpointError, load

    monkeypatch.chdir(tmp_path)  # no file named "e4e" here
    monkeypatch.setenv("PTI_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(CheckpointError, match="encoder in pti.s zoo, not a generator"):
        load("e4e")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_progress_outside_a_terminal_is_two_lines(cache: Path, payload: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # captured stderr is not a terminal: torch.hub's redrawn bar is replaced by a line before and one after
    sha = hashlib.sha256(payload.read_bytes()).hexdigest()
    zoo.download(entry_for(payload, sha), progress=True)
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"download testnet: {payload.as_uri()} -> {cache / 'testnet.bin'}", lines[1]]
    assert lines[1].startswith("download testnet: 3.0 MiB in ")


def test_inversion_defaults_give_only_the_demo_generator_its_own_projector_lr():
    from pti.core import config
    from pti.core.config import InversionConfig

    # the demo generator is inverted at projector lr 0.02: at PTI's 5e-3, 450 steps left w within
    # 0.6 std of the mean on it (model card); every other generator keeps the official PTI's settings
    assert config.inversion_defaults("demo") == dataclasses.replace(InversionConfig(), lr=0.02)
    for other in ("ffhq", "e4e", "not-a-zoo-name", "runs/g.safetensors", None, torch.nn.Linear(1, 1)):
        assert config.inversion_defaults(other) == InversionConfig() and InversionConfig().lr == 5e-3


@pytest.mark.parametrize("extra, lr", [((), 0.02), (("--inv-lr", "0.01"), 0.01)])
def test_pti_invert_on_the_demo_generator_uses_its_projector_lr_unless_given(tmp_path, extra, lr):
    import json

    import numpy as np
    from PIL import Image

    torch.set_num_threads(1)
    (tmp_path / "photos").mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "photos" / "a.png")
    code = cli_main(["invert", str(tmp_path / "photos"), "--output", str(tmp_path / "run"), "--generator", "demo",
                     "--device", "cpu", "--no-align", "--quiet", "--inv-steps", "1", "--inv-w-avg-samples", "100",
                     "--inv-perceptual-net", "effnet-lite0", *extra])
    assert code == 0
    metrics = json.loads((tmp_path / "run" / "a" / "metrics.json").read_text())
    assert metrics["config"]["inversion"]["lr"] == lr
