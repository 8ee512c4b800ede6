"""Autoregressive generation over discrete image codes (Janus, LlamaGen style).

The generator owns the image-code side of the model -- code embeddings, the
aligner that maps them to the LLM width, and the head that predicts codes --
and drives an LLM it is handed at call time (any Hugging Face decoder that
accepts ``inputs_embeds``).
"""
import torch
from torch import nn

from reca_toolkit.models.losses import head_cross_entropy
from reca_toolkit.registry import GENERATORS


def position_ids(mask):
    """Positions that skip left padding: 0 at each row's first real token."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


@GENERATORS.register_module()
class AutoregressiveCodeGenerator(nn.Module):
    """Teacher-forced next-code cross-entropy; CFG sampling with a KV cache.

    Args:
        code_embeddings: ``nn.Embedding`` over the codebook.
        code_aligner: maps code embeddings to the LLM width.
        head: maps LLM hidden states to codebook logits.
        guidance_scale: classifier-free guidance weight; 1 disables it.
        temperature: sampling temperature; 0 samples greedily.
        top_k: keep only the k most likely codes, or None for all.
    """

    def __init__(self, code_embeddings, code_aligner, head,
                 guidance_scale=5.0, temperature=1.0, top_k=None):
        super().__init__()
        self.code_embeddings = code_embeddings
        self.code_aligner = code_aligner
        self.head = head
        self.guidance_scale = guidance_scale
        self.temperature = temperature
        self.top_k = top_k

    def embed(self, codes, dtype):
        return self.code_aligner(self.code_embeddings(codes)).to(dtype)

    def training_sequence(self, condition, codes):
        """Prompt followed by the teacher-forced codes.

        Returns ``(embeds, mask, first)``: the hidden state at position
        ``first + i`` predicts ``codes[:, i]``. The prompt ends with the
        begin-of-image token, whose state predicts the first code.
        """
        embeds = torch.cat(
            [condition.embeds,
             self.embed(codes[:, :-1], condition.embeds.dtype)], dim=1)
        mask = torch.cat([condition.mask, condition.mask.new_ones(
            codes.shape[0], codes.shape[1] - 1)], dim=1)
        return embeds, mask, condition.embeds.shape[1] - 1

    def loss(self, llm, condition, codes, chunk_size=None):
        """Teacher-forced cross-entropy, with ``chunk_size`` positions' logits
        at a time (:func:`~reca_toolkit.models.losses.head_cross_entropy`).
        """
        embeds, mask, first = self.training_sequence(condition, codes)
        hidden = llm(inputs_embeds=embeds, attention_mask=mask,
                     position_ids=position_ids(mask),
                     use_cache=False).last_hidden_state
        # Only code positions reach the head: prompt and understanding
        # positions never enter the loss.
        hidden = hidden[:, first:first + codes.shape[1]]
        loss, acc = head_cross_entropy(hidden, self.head, codes, chunk_size)
        return dict(loss=loss, acc=acc)

    @torch.no_grad()
    def sample(self, llm, condition, null_condition, num_tokens,
               guidance_scale=None, temperature=None, top_k=None,
               generator=None):
        """Sample ``num_tokens`` codes per row of ``condition``.

        Conditional and unconditional rows run as one batch of 2B through a
        shared KV cache.
        """
        scale = self.guidance_scale if guidance_scale is None \
            else guidance_scale
        temperature = self.temperature if temperature is None \
            else temperature
        top_k = self.top_k if top_k is None else top_k
        guided = scale != 1
        embeds, mask = condition.embeds, condition.mask
        if guided:
            embeds = torch.cat([embeds, null_condition.embeds])
            mask = torch.cat([mask, null_condition.mask])
        batch = len(condition)
        codes = torch.empty(batch, num_tokens, dtype=torch.long,
                            device=embeds.device)
        positions = position_ids(mask)
        out = llm(inputs_embeds=embeds, attention_mask=mask,
                  position_ids=positions, use_cache=True)
        next_position = positions[:, -1:] + 1
        for i in range(num_tokens):
            logits = self.head(out.last_hidden_state[:, -1]).float()
            if guided:
                cond, uncond = logits.chunk(2)
                logits = uncond + scale * (cond - uncond)
            codes[:, i] = self._pick(logits, temperature, top_k, generator)
            if i == num_tokens - 1:
                break
            step = self.embed(codes[:, i:i + 1], embeds.dtype)
            if guided:
                step = torch.cat([step, step])
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
            out = llm(inputs_embeds=step, attention_mask=mask,
                      position_ids=next_position,
                      past_key_values=out.past_key_values, use_cache=True)
            next_position = next_position + 1
        return codes

    @staticmethod
    def _pick(logits, temperature, top_k, generator):
        if temperature == 0:
            return logits.argmax(-1)
        logits = logits / temperature
        if top_k:
            kth = logits.topk(top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float('-inf'))
        probs = logits.softmax(-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
