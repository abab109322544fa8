"""InterFaceGAN (Shen et al., CVPR 2020): a linear boundary in W for a scored attribute.

Given codes ``w [N, w_dim]`` and attribute scores ``[N]``, the samples with the highest and
lowest scores (``extreme_fraction`` of the scored ones at each end) are labelled 1 and 0,
split into a training and a held-out part, and a linear SVM (scikit-learn ``LinearSVC``
on standardised features) separates them. The boundary's unit normal, oriented towards
higher scores and expressed in the original W coordinates, is the edit direction.

:func:`sample_and_score` produces the training data from a generator and a scorer
(:class:`pti.editing.scorers.LandmarkScorer`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from pti.progress import progress_bar

from pti.editing.direction import Direction
from pti.editing.sampling import sample_w, stdev_along


@dataclass(frozen=True)
class BoundaryFit:
    """A fitted boundary and how well it separates the attribute.

    Attributes:
        direction: unit normal (``scale`` = stdev of the given codes along it).
        train_accuracy, heldout_accuracy: SVM accuracy on the training and held-out
            extreme samples (chance is 0.5).
        n_train, n_heldout: how many samples each accuracy is over.
        heldout_spearman: Spearman correlation between the signed distance to the boundary
            and the score over all held-out scored samples (not only the extremes).
    """

    direction: Direction
    train_accuracy: float
    heldout_accuracy: float
    n_train: int
    n_heldout: int
    heldout_spearman: float
    extras: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, float | int | str]:
        return {"name": self.direction.name, "train_accuracy": self.train_accuracy,
                "heldout_accuracy": self.heldout_accuracy, "n_train": self.n_train, "n_heldout": self.n_heldout,
                "heldout_spearman": self.heldout_spearman, **self.extras}


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if len(a) < 3:
        return float("nan")
    return float(spearmanr(a, b).statistic)


#: the SVM regularisations :func:`fit_boundary` chooses from by cross-validation (``C=None``)
C_GRID = (1.0, 0.1, 0.01, 0.001)


def _linear_svm(C: float):
    """The linear SVM of every boundary fit and of its cross-validation (one place for its settings)."""
    from sklearn.svm import LinearSVC

    return LinearSVC(C=C, max_iter=20_000, dual="auto")


def choose_svm_c(x: np.ndarray, labels: np.ndarray, grid: tuple[float, ...] = C_GRID, folds: int = 5,
                 seed: int = 0) -> float:
    """The C of ``grid`` with the best ``folds``-fold cross-validated accuracy of a standardised linear SVM
    on ``(x [N, D], labels [N] in {0, 1})`` (sklearn ``cross_val_score``; ties go to the larger C).

    Why: with a few thousand samples in W (D = 256-512) the default C = 1 fits the training extremes
    almost perfectly and its normal is noisy. Measured on the 66 kimg distilled demo generator
    (3,000 samples, smile): C = 1 train/held-out accuracy 1.000/0.903 and 0.11 dlib smile change per
    12/255 image change; C = 0.01 0.967/0.937 and 0.19. A grid of one value, or fewer than 2 samples of
    a class per fold: returns ``grid[0]`` (1.0 for :data:`C_GRID`, the former fixed C).
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = min(folds, int(np.bincount(labels.astype(int), minlength=2).min()))
    if folds < 2 or len(grid) == 1:
        return float(grid[0])
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    accuracy = {c: float(cross_val_score(make_pipeline(StandardScaler(), _linear_svm(c)), x, labels, cv=cv).mean())
                for c in grid}
    best = max(accuracy.values())
    return max(c for c, a in accuracy.items() if a >= best - 1e-12)


def fit_boundary(w: torch.Tensor, scores: torch.Tensor, name: str, extreme_fraction: float = 0.3,
                 heldout_fraction: float = 0.25, seed: int = 0, C: float | None = None,
                 source: str = "") -> BoundaryFit:
    """Fit a linear SVM boundary for one attribute.

    Args:
        w: ``[N, w_dim]`` codes (rows of W, not W+).
        scores: ``[N]`` attribute scores; NaN (no face found) rows are dropped.
        name: the attribute's name (becomes the direction's name).
        extreme_fraction: fraction of the scored samples taken from each end (InterFaceGAN
            used 0.02 of 500k samples; with thousands of samples 0.2-0.3 keeps enough).
        heldout_fraction: fraction of the labelled samples kept out of training.
        seed: shuffling seed (the fit itself is deterministic).
        C: SVM regularisation; None: chosen from :data:`C_GRID` by 5-fold cross-validation on the training
            part only (:func:`choose_svm_c`; the held-out part stays unseen). Recorded in ``extras['C']``.
    """
    from sklearn.preprocessing import StandardScaler

    if w.ndim != 2 or scores.ndim != 1 or w.shape[0] != scores.shape[0]:
        raise ValueError(f"w must be [N, w_dim] and scores [N], got {tuple(w.shape)} and {tuple(scores.shape)}")
    if not 0 < extreme_fraction <= 0.5 or not 0 < heldout_fraction < 1:
        raise ValueError("extreme_fraction must be in (0, 0.5] and heldout_fraction in (0, 1)")
    x_all = w.detach().double().cpu().numpy()
    y_all = scores.detach().double().cpu().numpy()
    keep = np.isfinite(y_all)
    x, y = x_all[keep], y_all[keep]
    k = int(len(y) * extreme_fraction)
    if k < 4:
        raise ValueError(f"attribute {name!r}: only {len(y)} of {len(y_all)} samples were scored, too few to fit a "
                         "boundary; use more samples")
    order = np.argsort(y, kind="stable")
    idx = np.concatenate([order[:k], order[-k:]])
    labels = np.concatenate([np.zeros(k), np.ones(k)])
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(idx))
    idx, labels = idx[perm], labels[perm]
    n_held = max(2, int(round(len(idx) * heldout_fraction)))
    tr, te = slice(n_held, None), slice(0, n_held)

    if C is None:
        C = choose_svm_c(x[idx[tr]], labels[tr], seed=seed)
    scaler = StandardScaler().fit(x[idx[tr]])
    svm = _linear_svm(C)
    svm.fit(scaler.transform(x[idx[tr]]), labels[tr])
    train_acc = float(svm.score(scaler.transform(x[idx[tr]]), labels[tr]))
    held_acc = float(svm.score(scaler.transform(x[idx[te]]), labels[te]))

    # decision(x) = coef · (x - mean) / std + b  ->  normal in W is coef / std
    normal = torch.from_numpy(svm.coef_[0] / scaler.scale_)
    normal = normal / normal.norm()
    # held-out set for the rank correlation: every scored sample not used for training
    train_rows = np.zeros(len(y), dtype=bool)
    train_rows[idx[tr]] = True
    held_rows = ~train_rows
    spearman = _spearman(x[held_rows] @ normal.numpy(), y[held_rows])
    direction = Direction(vector=normal.float(), name=name,
                          source=source or f"InterFaceGAN linear SVM on {len(idx)} extreme of {len(y)} scored samples",
                          scale=float(stdev_along(torch.from_numpy(x).float(), normal[None].float())[0]))
    return BoundaryFit(direction=direction, train_accuracy=train_acc, heldout_accuracy=held_acc,
                       n_train=int(len(idx) - n_held), n_heldout=int(n_held), heldout_spearman=spearman,
                       extras={"scored_fraction": float(keep.mean()), "C": float(C)})


@torch.no_grad()
def sample_and_score(G: torch.nn.Module, scorer: Callable[[torch.Tensor], dict[str, torch.Tensor]],
                     num_samples: int, seed: int = 0, truncation_psi: float = 1.0, batch_size: int = 32,
                     noise_mode: str = "const", progress: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Draw ``num_samples`` codes, render and score them.

    Returns:
        ``(w [N, w_dim] on CPU, {attribute: [N] scores, NaN where unscored})``.
    """
    w = sample_w(G, num_samples, seed=seed, truncation_psi=truncation_psi)
    num_ws = int(G.num_ws)
    parts: dict[str, list[torch.Tensor]] = {}
    for i in progress_bar(range(0, num_samples, batch_size), desc="rendering and scoring", disable=not progress):
        ws = w[i:i + batch_size][:, None, :].expand(-1, num_ws, -1)
        images = G.synthesis(ws, noise_mode=noise_mode).float()
        for key, value in scorer(images).items():
            parts.setdefault(key, []).append(value.float().cpu())
    return w.cpu(), {key: torch.cat(v) for key, v in parts.items()}


def fit_generator_boundaries(G: torch.nn.Module, attributes: tuple[str, ...] | list[str], num_samples: int,
                             seed: int = 0, truncation_psi: float = 1.0, extreme_fraction: float = 0.3,
                             heldout_fraction: float = 0.25, scorer: Callable | None = None,
                             batch_size: int = 32, progress: bool = True) -> tuple[list[BoundaryFit], dict]:
    """Sample ``G``, score the images with dlib landmarks and fit one boundary per attribute.

    Each direction's ``scale`` is set by :func:`pti.editing.strength.calibrated` (1 unit = a
    4/255 mean image change); the stdev of W along the normal is kept as ``w_stdev_along``.

    Returns:
        ``(fits, metadata)``; metadata records the generator's w_dim/num_ws, the sha256 of
        its mapping weights (to recognise the generator the boundaries belong to), the
        sampling settings and each fit's :meth:`BoundaryFit.summary`.
    """
    from pti.stylegan2.checkpoints import weights_fingerprint

    if scorer is None:
        from pti.editing.scorers import LandmarkScorer

        landmark_scorer = LandmarkScorer()
        scorer = lambda images: landmark_scorer(images, attributes)  # noqa: E731
    w, scores = sample_and_score(G, scorer, num_samples, seed=seed, truncation_psi=truncation_psi,
                                 batch_size=batch_size, progress=progress)
    from pti.editing.strength import calibrated

    fits = []
    for attribute in attributes:
        if attribute not in scores:
            raise KeyError(f"the scorer returned no {attribute!r} scores (it returned {sorted(scores)})")
        fits.append(fit_boundary(w, scores[attribute], attribute, extreme_fraction=extreme_fraction,
                                 heldout_fraction=heldout_fraction, seed=seed,
                                 source=f"InterFaceGAN boundary fitted on {num_samples} samples (seed {seed}, "
                                        f"truncation {truncation_psi}) scored with dlib landmarks"))
    # strength unit: the convention of every computed direction (pti.editing.strength), not the
    # stdev of W along the normal, which is small for an SVM normal
    fits = [dataclasses.replace(f, direction=d, extras={**f.extras, "w_stdev_along": f.direction.scale})
            for f, d in zip(fits, calibrated(G, [f.direction for f in fits], cache=False))]
    metadata = {"w_dim": int(G.w_dim), "num_ws": int(G.num_ws),
                "mapping_sha256": weights_fingerprint(G, ("mapping.",)), "num_samples": num_samples,
                "seed": seed, "truncation_psi": truncation_psi, "extreme_fraction": extreme_fraction,
                "heldout_fraction": heldout_fraction, "fits": {f.direction.name: f.summary() for f in fits}}
    return fits, metadata
