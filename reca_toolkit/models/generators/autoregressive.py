"""Autoregressive generation over discrete image codes (Janus, LlamaGen style).

The generator owns the image-code side of the model -- code embeddings, the
aligner that maps them to the LLM width, and the head that predicts codes --
and drives an LLM it is handed at call time (any Hugging Face decoder that
accepts ``inputs_embeds``).
"""
import torch
from torch import nn

from reca_toolkit.models.losses import head_cross_entropy
from reca_toolkit.models.umm.base import Condition, run_backbone
from reca_toolkit.registry import GENERATORS


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

    def loss(self, llm, condition, codes, chunk_size=None):
        """Teacher-forced cross-entropy, with ``chunk_size`` positions' logits
        at a time (:func:`~reca_toolkit.models.losses.head_cross_entropy`).

        The prompt ends with the begin-of-image token, whose state predicts
        the first code; the state of code ``i`` predicts code ``i + 1``.
        """
        tail = self.embed(codes[:, :-1], condition.embeds.dtype)
        hidden = run_backbone(llm, condition, tail,
                              use_cache=False).last_hidden_state
        # Only code positions reach the head: prompt and understanding
        # positions never enter the loss.
        hidden = hidden[:, -codes.shape[1]:]
        loss, acc = head_cross_entropy(hidden, self.head, codes, chunk_size)
        return dict(loss=loss, acc=acc)

    @torch.no_grad()
    def sample(self, llm, condition, null_condition, num_tokens,
               guidance_scale=None, temperature=None, top_k=None,
               generator=None):
        """Sample ``num_tokens`` codes per row of ``condition``.

        Conditional and unconditional rows (of any lengths) run as one batch
        of 2B through a shared KV cache.
        """
        scale = self.guidance_scale if guidance_scale is None \
            else guidance_scale
        temperature = self.temperature if temperature is None \
            else temperature
        top_k = self.top_k if top_k is None else top_k
        guided = scale != 1
        rows = Condition.cat([condition, null_condition]) if guided \
            else condition
        batch = len(condition)
        codes = torch.empty(batch, num_tokens, dtype=torch.long,
                            device=rows.embeds.device)
        out = run_backbone(llm, rows, use_cache=True)
        mask = rows.mask
        next_position = rows.position_ids[:, -1:] + 1
        for i in range(num_tokens):
            logits = self.head(out.last_hidden_state[:, -1]).float()
            if guided:
                cond, uncond = logits.chunk(2)
                logits = uncond + scale * (cond - uncond)
            codes[:, i] = self._pick(logits, temperature, top_k, generator)
            if i == num_tokens - 1:
                break
            step = self.embed(codes[:, i:i + 1], rows.embeds.dtype)
            if guided:
                step = torch.cat([step, step])
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
            out = llm(inputs_embeds=step, attention_mask=mask,
                      position_ids=next_position, cache=out.cache,
                      use_cache=True)
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
