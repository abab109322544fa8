"""StyleCLIP (Patashnik et al. 2021) text-driven edits on pti generators, tuned ones included.

- ``clip_model``: CLIP through open_clip (OpenAI ViT-B/32 by default), prompt templates
- ``global_directions``: channel statistics, Δi_c, Δt, β / auto-β, Δs in style space S (Sec. 6)
- ``files``: StyleCLIP's precomputed FFHQ files (fs3.npy, S_mean_std), download and import
- ``mapper``: StyleCLIP's levels mapper, loading the official checkpoints (Sec. 5)
- ``optimize``: latent optimisation with CLIP and the pivot's L2 term (Sec. 4)

Nothing is imported here eagerly: open_clip loads only when a CLIP is needed.
"""
