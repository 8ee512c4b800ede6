# Iteration 1 of the tiny Janus (docs/toy_study.md): the real transformers
# Janus classes in a 1.35M-parameter configuration, from random
# initialisation, on GenEval-Shapes training scenes: text-to-image on SPARSE
# captions plus image-to-text on DENSE descriptions. Its generation never
# reads the model's understanding embeddings, and RecA fails on it;
# pretrain_joint.py, which builds on this file, made the shipped
# projects/janus_toy/pretrained (model card: projects/janus_toy/README.md).
#   python tools/train.py projects/janus_toy/configs/pretrain.py
_base_ = [
    '../../../configs/_base_/datasets/geneval_shapes_val.py',
    '../../../configs/_base_/default_runtime.py',
]
# PatchLookupTokenizer and GenEvalShapesScenes are the toy's own components,
# registered by its project package.
custom_imports = dict(imports=['projects.janus_toy.janus_toy'],
                      allow_failed_imports=False)

max_iters = 4000
model = dict(
    type='RecAModel',
    umm=dict(
        type='JanusProUMM',
        config=dict(
            text_config=dict(
                model_type='llama', vocab_size=1024, hidden_size=128,
                intermediate_size=256, num_hidden_layers=4,
                num_attention_heads=4, num_key_value_heads=4,
                max_position_embeddings=256),
            # 64 px, 16 px patches: one understanding token per object slot.
            vision_config=dict(
                hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                image_size=64, patch_size=16, projection_dim=128,
                mlp_ratio=2, num_image_tokens=16),
            # Generation codes are the 19 slot patches of PatchLookupTokenizer;
            # the VQ-VAE the Janus classes still build is unused, so it is
            # the smallest they allow (one level of 32 channels).
            vq_config=dict(
                embed_dim=8, num_embeddings=19, base_channels=32,
                channel_multiplier=[1], num_res_blocks=0, latent_channels=1,
                projection_dim=128, image_token_embed_dim=128),
            image_token_id=3),
        tokenizer=dict(type='JanusDemoTokenizer', vocab_size=1024),
        frozen=['vqmodel'],
        weights_dtype='float32',
        trainable_dtype='float32',
        system_prompt='',
        gen_tokenizer=dict(type='PatchLookupTokenizer', grid_size=4),
        generator=dict(type='AutoregressiveCodeGenerator',
                       guidance_scale=2.0, temperature=1.0)),
    objectives=dict(
        t2i=dict(type='TextToImage', null_prob=0.1),
        i2t=dict(type='ImageToText'),
        # The same descriptions from a 32 px view (4 tokens), so that
        # understanding also works at the bottleneck RecA may use.
        i2t_low=dict(type='ImageToText'),
    ),
)

# Real captions miss details. Here each colour word is dropped with p 0.5
# and the relation with p 0.7, and six colour-shape pairs (HELD_OUT_PAIRS:
# red triangles, green circles, ...) are in the images but their colour is
# never named in a caption. The dense descriptions image-to-text learns from
# name every object's colour, shape and place, those pairs included.
scenes = dict(type='GenEvalShapesScenes', num_scenes=20000,
              include_held_out=True)
train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    sampler=dict(type='MultiSourceSampler', shuffle=True,
                 ratios=dict(t2i=2, i2t=1, i2t_low=1)),
    batch_sampler=dict(type='MultiSourceBatchSampler'),
    collate_fn=dict(type='reca_toolkit.collate_by_source'),
    dataset=dict(
        type='MultiSourceDataset',
        sources=dict(
            t2i=dict(scenes, seed=0, unnamed_held_out=True,
                     sparse=dict(color_drop=0.5, relation_drop=0.7),
                     pipeline=[dict(type='LoadImage'),
                               dict(type='ImageViews', gen_size=64)]),
            i2t=dict(scenes, seed=1,
                     pipeline=[dict(type='LoadImage'),
                               dict(type='ImageViews', und_size=64)]),
            i2t_low=dict(scenes, seed=1,
                         pipeline=[dict(type='LoadImage'),
                                   dict(type='ImageViews', und_size=32)]))))

optim_wrapper = dict(
    type='OptimWrapper',
    constructor='DecayGroupsOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.95),
                   weight_decay=0.02),
    clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0,
         end=100),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False, begin=100,
         end=max_iters),
]
train_cfg = dict(type='ResumableIterBasedTrainLoop', max_iters=max_iters,
                 val_begin=1, val_interval=1000)

# A 120-prompt GenEval-Shapes subset (20 per tag) as the learning curve.
val_dataloader = dict(dataset=dict(num_prompts=120))

default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(interval=1000, max_keep_ckpts=1))
custom_hooks = [
    dict(type='EvalSampleGridHook', num_images=24, ncols=6),
    dict(type='HFExportHook', out_dir='hf_export'),
]
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
