"""Janus encoders: SigLIP understanding features and VQ-16 generation codes.

Both wrap modules of a loaded ``transformers.JanusForConditionalGeneration``;
the Janus-Pro adapter builds them with those modules as default arguments.
"""
import torch
import torch.nn.functional as F
from torch import nn

from reca_toolkit.registry import ENCODERS


def l2_normalized_codes(latents, codebook):
    """Codes by the original Janus / LlamaGen quantizer rule.

    With ``codebook_l2_norm=True`` the original quantizer
    (``VectorQuantizer`` in ``deepseek-ai/Janus:janus/models/vq_model.py``)
    L2-normalises both the latent vectors and the codebook before the
    nearest-neighbour search. ``transformers``' ``JanusVQVAE.encode``
    (``JanusVQVAEVectorQuantizer.forward``) searches on the raw vectors, which
    picks different codes whenever codebook rows differ in norm; its decode
    side (``get_codebook_entry``) does normalise.

    Args:
        latents: ``[B, C, H, W]`` output of ``quant_conv``.
        codebook: ``[K, C]`` embedding table.

    Returns:
        ``[B, H * W]`` code indices in raster order.
    """
    z = F.normalize(latents.permute(0, 2, 3, 1).flatten(1, 2).float(), dim=-1)
    e = F.normalize(codebook.float(), dim=-1)
    # For unit vectors the smallest distance is the largest dot product.
    return torch.einsum('bnc,kc->bnk', z, e).argmax(-1)


@ENCODERS.register_module()
class JanusSigLIPEncoder(nn.Module):
    """Understanding encoder: SigLIP ``vision_model`` then the MLP ``aligner``.

    Gives ``(size / 16) ** 2`` embeddings of the LLM width (576 at 384 px).
    Other input sizes interpolate SigLIP's position embeddings, which is how
    the understanding view becomes a smaller information bottleneck.
    """

    def __init__(self, vision_model, aligner):
        super().__init__()
        self.vision_model = vision_model
        self.aligner = aligner

    @property
    def image_size(self):
        return self.vision_model.config.image_size

    def features(self, pixels):
        """SigLIP's output, before the aligner: what a feature cache holds.

        A frozen SigLIP runs without autograd, so none of its activations are
        kept for the backward. ``no_grad`` rather than ``inference_mode``:
        the aligner, which trains, saves its input for the backward, and an
        inference-mode tensor cannot be saved (docs/performance.md).
        """
        dtype = next(self.vision_model.parameters()).dtype
        trains_vision = any(p.requires_grad
                            for p in self.vision_model.parameters())
        with torch.set_grad_enabled(trains_vision and torch.is_grad_enabled()):
            return self.vision_model(
                pixel_values=pixels.to(dtype),
                interpolate_pos_encoding=pixels.shape[-1] != self.image_size,
            ).last_hidden_state

    def align(self, features):
        """SigLIP features -> embeddings in the LLM's input space."""
        aligner_dtype = next(self.aligner.parameters()).dtype
        return self.aligner(features.to(aligner_dtype))

    def forward(self, pixels):
        return self.align(self.features(pixels))


@ENCODERS.register_module()
class JanusVQTokenizer(nn.Module):
    """Generation tokenizer: pixels <-> VQ-16 codes of a ``JanusVQVAE``.

    Encoding uses :func:`l2_normalized_codes`; decoding uses the VQ-VAE's own
    ``decode``, which already normalises the codebook entries.
    """

    def __init__(self, vqmodel):
        super().__init__()
        self.vqmodel = vqmodel

    @property
    def num_codes(self):
        return self.vqmodel.config.num_embeddings

    @property
    def grid_size(self):
        return self.vqmodel.quantize.quant_state_dims[0]

    @property
    def num_tokens(self):
        return self.grid_size ** 2

    @torch.no_grad()
    def encode(self, pixels):
        dtype = self.vqmodel.quant_conv.weight.dtype
        latents = self.vqmodel.quant_conv(self.vqmodel.encoder(pixels.to(dtype)))
        codes = l2_normalized_codes(latents,
                                    self.vqmodel.quantize.embedding.weight)
        if codes.shape[1] != self.num_tokens:
            raise ValueError(
                f'generation view of {tuple(pixels.shape[-2:])} px gives '
                f'{codes.shape[1]} VQ codes, but the model generates '
                f'{self.num_tokens}; set the generation view to '
                f'{self.grid_size * (pixels.shape[-1] // latents.shape[-1])}'
                ' px')
        return codes

    @torch.no_grad()
    def decode(self, codes):
        pixels = self.vqmodel.decode(codes)
        return pixels.float().clamp(-1, 1)
