"""StyleGAN2 (ADA layout): networks, ops and checkpoint I/O."""
from pti.stylegan2.networks import Generator, MappingNetwork, SynthesisBlock, SynthesisNetwork

__all__ = ["Generator", "MappingNetwork", "SynthesisNetwork", "SynthesisBlock"]
