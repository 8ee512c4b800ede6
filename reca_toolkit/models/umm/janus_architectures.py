"""The published Janus-Pro architectures, as ``JanusConfig`` keyword data.

Sizing tools (``tools/benchmark.py --meta-init``,
``tools/analysis_tools/estimate.py``) build real-size models without their
weights. When a config's ``pretrained`` folder is present, its
``config.json`` gives the architecture; when it is not, the folder's name is
looked up here. The values are the ``config.json`` of the transformers-format
checkpoints deepseek-community/Janus-Pro-1B and -7B, converted from
deepseek-ai/Janus-Pro-1B and -7B by transformers'
``src/transformers/models/janus/convert_janus_weights_to_hf.py``
(huggingface/transformers); the models they build have 2.0766 B and
7.4078 B parameters, the sizes of the published checkpoints.
"""

_VISION = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
               image_size=384, patch_size=16, mlp_ratio=4.0, depth=2,
               num_image_tokens=576)
_VQ = dict(embed_dim=8, num_embeddings=16384, base_channels=128,
           channel_multiplier=[1, 1, 2, 2, 4], num_res_blocks=2,
           latent_channels=256)


def _janus_pro(hidden, intermediate, layers, heads):
    return dict(
        text_config=dict(
            model_type='llama', hidden_size=hidden,
            intermediate_size=intermediate, num_hidden_layers=layers,
            num_attention_heads=heads, num_key_value_heads=heads,
            vocab_size=102400, max_position_embeddings=16384,
            rms_norm_eps=1e-6, bos_token_id=100000, eos_token_id=100001,
            pad_token_id=100002),
        vision_config=dict(_VISION, projection_dim=hidden),
        vq_config=dict(_VQ, projection_dim=hidden,
                       image_token_embed_dim=hidden),
        image_token_id=100581,
        # The checkpoints have an untied lm_head; JanusConfig ties by default.
        tie_word_embeddings=False)


# Keyed by the checkpoint folder's name.
JANUS_PRO_ARCHITECTURES = {
    'Janus-Pro-1B': _janus_pro(2048, 5632, 24, 16),
    'Janus-Pro-7B': _janus_pro(4096, 11008, 30, 32),
}
