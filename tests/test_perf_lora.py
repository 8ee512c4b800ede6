"""LoRA on the tiny real Janus: only the adapters of the LLM train, and the
export merges them into weights that transformers loads."""
import pytest
import torch
from test_objectives import batches

from conftest import build_tiny_model

pytest.importorskip('peft', reason="LoRA needs the 'lora' extra (peft)")

LORA = dict(r=4, lora_alpha=8, lora_dropout=0.0,
            target_modules=['q_proj', 'k_proj', 'v_proj', 'o_proj',
                            'gate_proj', 'up_proj', 'down_proj'])


@pytest.fixture
def umm():
    umm = build_tiny_model(lora=LORA, weights_dtype='bfloat16').umm
    with torch.no_grad():  # peft starts lora_B at 0: make the adapters count
        for name, param in umm.language_model.named_parameters():
            if 'lora_B' in name:
                param.normal_(0, 0.2)
    return umm


def test_only_adapters_of_the_llm_train(umm):
    llm = dict(umm.language_model.named_parameters())
    trainable = {n for n, p in llm.items() if p.requires_grad}
    assert trainable and all('.lora_' in n for n in trainable)
    assert all(p.dtype == torch.float32 for n, p in llm.items()
               if n in trainable)
    # The LLM's own weights stay in weights_dtype; nothing is upcast.
    assert all(p.dtype == torch.bfloat16 for n, p in llm.items()
               if n not in trainable)


def test_lora_step_gives_gradients_to_adapters_only(umm):
    model = build_tiny_model(lora=LORA)
    model.loss(dict(recon=batches()['recon']))['loss_recon'].backward()
    llm = dict(model.umm.language_model.named_parameters())
    assert any(p.grad is not None for n, p in llm.items() if '.lora_' in n)
    assert all(p.grad is None for n, p in llm.items() if '.lora_' not in n)
    assert model.umm.generator.head.vision_head.weight.grad is not None


def test_lora_in_frozen_language_model_is_refused():
    with pytest.raises(ValueError, match="remove 'language_model'"):
        build_tiny_model(lora=LORA,
                         frozen=['vision_model', 'vqmodel', 'language_model'])


def test_export_merges_the_adapters(umm, tmp_path):
    from transformers import JanusForConditionalGeneration
    umm.save_pretrained(tmp_path / 'export')
    loaded = JanusForConditionalGeneration.from_pretrained(
        tmp_path / 'export', local_files_only=True, dtype=torch.bfloat16)
    assert not any('lora' in k for k in loaded.state_dict())
    torch.manual_seed(0)
    embeds = torch.randn(2, 7, 64, dtype=torch.bfloat16)
    with torch.no_grad():
        ours = umm.language_model(inputs_embeds=embeds).last_hidden_state
        theirs = loaded.model.language_model(
            inputs_embeds=embeds).last_hidden_state
    torch.testing.assert_close(theirs, ours, atol=2e-2, rtol=2e-2)
    # ... which the unmerged base weights alone would not give.
    from peft.tuners.lora import LoraLayer
    for module in umm.language_model.modules():
        if isinstance(module, LoraLayer):
            module.enable_adapters(False)
    with torch.no_grad():
        base = umm.language_model(inputs_embeds=embeds).last_hidden_state
    assert (base - ours).abs().max() > 0.2
