"""The encoder-pivot benchmark's editability columns when dlib finds no face in some edit images."""
from __future__ import annotations

import math
import pytest
import torch

from pti.bench.encoder_pivots import STRENGTHS, _edit_cell, editability
from pti.core.pivot import Pivot


class _Scores:
    """Scores by strength index, as LandmarkScorer returns them (NaN: no face found)."""

    def __init__(self, values: list[float]) -> None:
        self.values = values

    def __call__(self, images: torch.Tensor, attributes: list[str]) -> dict[str, torch.Tensor]:
        assert images.shape[0] == len(STRENGTHS)
        return {a: torch.tensor(self.values) for a in attributes}


@pytest.fixture(scope="module")
def demo():
    from pti.stylegan2.checkpoints import load

    G = load("demo").eval()
    return G, Pivot(w=G.mapping.w_avg.reshape(1, 1, -1).expand(1, G.num_ws, -1).clone())


def test_a_missing_face_in_the_middle_is_left_out_of_rho_and_counted(demo):
    G, pivot = demo
    out = editability(G, pivot, ("smile",), _Scores([0.1, 0.2, float("nan"), 0.4, 0.5, 0.6, 0.7]))
    assert out["smile_delta"] == pytest.approx(0.6) and out["smile_spearman"] == pytest.approx(1.0)
    assert out["smile_no_face"] == 1 and _edit_cell(out, "smile") == "+0.600 (1.00; no face in 1/7)"


def test_a_missing_face_at_an_end_has_no_delta(demo):
    G, pivot = demo
    out = editability(G, pivot, ("smile",), _Scores([0.1, 0.2, 0.3, 0.2, 0.1, 0.0, float("nan")]))
    assert math.isnan(out["smile_delta"]) and out["smile_spearman"] == pytest.approx(-0.4414, abs=1e-3)
    assert _edit_cell(out, "smile") == "n/a (-0.44; no face in 1/7)"
    none = editability(G, pivot, ("smile",), _Scores([float("nan")] * 5 + [0.1, 0.2]))
    assert math.isnan(none["smile_spearman"]) and none["smile_no_face"] == 5
    full = editability(G, pivot, ("smile",), _Scores([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]))
    assert _edit_cell(full, "smile") == "+0.600 (1.00)"
