"""Walking through a trained flow's latent space: encode real data, decode it back
(reconstructions) and along straight lines between two codes (interpolations)."""
from invflow.latent.codec import decode, encode, held_out_examples
from invflow.latent.interpolate import Interpolation, interpolate, write_interpolation
from invflow.latent.reconstruct import Reconstruction, reconstruct, write_reconstruction

__all__ = ["Interpolation", "Reconstruction", "decode", "encode", "held_out_examples", "interpolate",
           "reconstruct", "write_interpolation", "write_reconstruction"]
