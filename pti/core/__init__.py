"""The paper's core (Roich et al., "Pivotal Tuning for Latent-based Editing of Real Images", ACM TOG 2022).

Read in this order:

- :mod:`pti.core.config`: ``InversionConfig``, ``TuningConfig``, ``LocalityConfig``; the paper's knobs and
  defaults (450 inversion steps, 350 tuning steps, α = 30, λ_R = 0.1), with their valid ranges;
- :mod:`pti.core.pivot`: ``Pivot`` (w_p and its noise maps), its file, ``load_pivot``;
- :mod:`pti.core.losses`: L2, the noise regulariser, the locality regulariser (PTI Eq. 2-7);
- :mod:`pti.core.perceptual`: LPIPS, or a named offline fallback (:mod:`pti.core.effnet_lite0`);
- :mod:`pti.core.projector`: ``project(G, target, cfg) -> Pivot``, the inversion into W or W+ (Eq. 1);
- :mod:`pti.core.tuning`: ``pivotal_tune(G, targets, pivots, cfg)``, single and multi-image PTI with the
  locality regulariser and the early stop;
- :mod:`pti.core.divergence` (a diverging optimisation is an error), :mod:`pti.core.conditioning` (class
  labels of conditional generators).

Beneath the core sits :mod:`pti.stylegan2`; above it :mod:`pti.editing`, :mod:`pti.encoders`,
:mod:`pti.alignment` and :mod:`pti.metrics`; beside it :mod:`pti.fast`, the opt-in speed paths tested equal
to these loops. Nothing here imports those.
"""
