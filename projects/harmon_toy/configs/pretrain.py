# The tiny Harmon (docs/toy_study.md): the real pieces of HarmonUMM --
# transformers Qwen2, the MAR encoder and decoder with their per-token
# diffusion head, Harmon's projections and chat template -- at 1.96M trained
# parameters, from random initialisation, on the Janus toy's scenes and text:
# text-to-image on SPARSE captions plus image-to-text on DENSE descriptions,
# the held-out colour-shape pairs never named in a caption. Like the real
# Harmon, it is never trained on image-conditioned generation: its
# generation reads the MAR encoder's states of the visible tokens, the same
# encoder whose states of a whole image are its understanding embeddings.
# It made projects/harmon_toy/pretrained (model card:
# projects/harmon_toy/README.md).
#   python tools/train.py projects/harmon_toy/configs/pretrain.py
_base_ = ['../../janus_toy/configs/pretrain.py', './harmon_toy_umm.py']
custom_imports = dict(imports=['projects.harmon_toy.harmon_toy'],
                      allow_failed_imports=False)

model = dict(
    umm=dict(
        _base_.harmon_toy_umm, _delete_=True, type='HarmonUMM',
        config=dict(
            vocab_size=1024, hidden_size=128, intermediate_size=256,
            num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256,
            rope_theta=1000000.0, rms_norm_eps=1e-6,
            tie_word_embeddings=True),
        tokenizer=dict(type='QwenDemoTokenizer', vocab_size=1024)),
    objectives=dict(_delete_=True,
                    t2i=dict(type='TextToImage', null_prob=0.1),
                    i2t=dict(type='ImageToText')))

# t2i 16 + i2t 16. Harmon's understanding reads the generation tokenizer's
# latents, so both views are the 64 px scene.
scenes = dict(type='GenEvalShapesScenes', num_scenes=20000,
              include_held_out=True)
train_dataloader = dict(
    batch_size=32,
    sampler=dict(ratios=dict(_delete_=True, t2i=1, i2t=1)),
    dataset=dict(sources=dict(
        _delete_=True,
        t2i=dict(scenes, seed=0, unnamed_held_out=True,
                 sparse=dict(color_drop=0.5, relation_drop=0.7),
                 pipeline=[dict(type='LoadImage'),
                           dict(type='ImageViews', gen_size=64)]),
        i2t=dict(scenes, seed=1,
                 pipeline=[dict(type='LoadImage'),
                           dict(type='ImageViews', und_size=64)]))))

# 2000 iterations: sized to ~25 min on the shared 2-core CPU (0.6-0.75 s per
# iteration over the first 100, with other jobs on it); the Janus toy had 4000.
max_iters = 2000
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0,
         end=100),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False, begin=100,
         end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters // 4)
default_hooks = dict(checkpoint=dict(interval=max_iters))
