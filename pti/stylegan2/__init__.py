"""StyleGAN2 (ADA layout): networks, ops and checkpoint I/O."""
from pti.stylegan2.checkpoints import load, load_with_format, save
from pti.stylegan2.errors import CheckpointError, UnsafeCheckpointError
from pti.stylegan2.networks import Generator, MappingNetwork, SynthesisBlock, SynthesisNetwork

__all__ = ["Generator", "MappingNetwork", "SynthesisNetwork", "SynthesisBlock", "load", "load_with_format", "save",
           "CheckpointError", "UnsafeCheckpointError"]
