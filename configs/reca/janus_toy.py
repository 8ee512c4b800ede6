# RecA post-training of a real pretrained model on a 2-core CPU: the tiny
# Janus of projects/janus_toy, pretrained there on shape scenes whose
# captions never name some colour-shape pairs that its image-to-text
# descriptions do. It scores GenEval-Shapes before training and after, and
# prints both per tag:
#   python tools/train.py configs/reca/janus_toy.py
# What RecA does and does not change here, measured against an equal-compute
# control over several seeds: docs/toy_study.md.
_base_ = [
    '../_base_/datasets/geneval_shapes_val.py',
    '../_base_/default_runtime.py',
]
# PatchLookupTokenizer and GenEvalShapesScenes are the toy's own components,
# registered by its project package.
custom_imports = dict(imports=['projects.janus_toy.janus_toy'],
                      allow_failed_imports=False)

max_iters = 1000
und_size = 32  # the information bottleneck: 4 understanding tokens

model = dict(
    type='RecAModel',
    umm=dict(
        type='JanusProUMM',
        pretrained='projects/janus_toy/pretrained',
        # SigLIP (and the unused VQ-VAE) frozen, as in the Janus recipe;
        # the LLM, both aligners and the generation head train.
        frozen=['vision_model', 'vqmodel'],
        weights_dtype='float32',
        trainable_dtype='float32',
        system_prompt='',
        # The checkpoint's generation codes are slot patches, not VQ codes.
        gen_tokenizer=dict(type='PatchLookupTokenizer', grid_size=4),
        generator=dict(type='AutoregressiveCodeGenerator',
                       guidance_scale=2.0, temperature=1.0)),
    objectives=dict(
        recon=dict(type='ReconstructionAlignment', weight=1.0),
        # Janus shares its LLM between understanding and generation, so
        # image-to-text stays in the mix (the RecA authors' rule).
        i2t=dict(type='ImageToText', weight=1.0),
    ),
)

# Unlabeled scenes for RecA (images only: their captions are never read) and
# the pretraining's dense descriptions for image-to-text, 1:1.
train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    sampler=dict(type='MultiSourceSampler', shuffle=True,
                 ratios=dict(recon=1, i2t=1)),
    batch_sampler=dict(type='MultiSourceBatchSampler'),
    collate_fn=dict(type='reca_toolkit.collate_by_source'),
    dataset=dict(
        type='MultiSourceDataset',
        sources=dict(
            recon=dict(
                type='GenEvalShapesScenes', num_scenes=20000, seed=2,
                include_held_out=True,
                pipeline=[dict(type='LoadImage'),
                          dict(type='ImageViews', und_size=und_size,
                               gen_size=64)]),
            i2t=dict(
                type='GenEvalShapesScenes', num_scenes=20000, seed=1,
                include_held_out=True,
                pipeline=[dict(type='LoadImage'),
                          dict(type='ImageViews', und_size=64)]))))

optim_wrapper = dict(
    type='OptimWrapper',
    constructor='DecayGroupsOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.95),
                   weight_decay=0.02),
    clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0,
         end=50),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=False, begin=50,
         end=max_iters),
]
# Validation watches generation and understanding: the 300 GenEval-Shapes
# prompts, and image-to-text on 64 held-out scenes (a stream no run trains
# on, every colour-shape pair), each described greedily and scored exactly.
# Each metric reads its own source.
val_dataloader = dict(dataset=dict(
    _delete_=True, type='EvalSets', datasets=[
        {{_base_.val_dataloader.dataset}},
        dict(type='HeldOutImages', name='describe',
             source=dict(type='GenEvalShapesScenes', num_scenes=64, seed=99,
                         include_held_out=True,
                         pipeline=[dict(type='LoadImage'),
                                   dict(type='ImageViews', und_size=64)]))]))
val_evaluator = [
    dict(_base_.val_evaluator, source='geneval_shapes'),
    dict(type='DescriptionAccuracyMetric', source='describe'),
]
# Four validations during training (the last one is the "after" score).
train_cfg = dict(type='ResumableIterBasedTrainLoop', max_iters=max_iters,
                 val_begin=1, val_interval=max_iters // 4)

default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
custom_hooks = [
    dict(type='BeforeAfterValHook'),
    dict(type='CollapseMonitorHook', recon_key='loss_recon',
         quality_key='geneval_shapes/overall'),
    dict(type='CollapseMonitorHook', recon_key='loss_recon',
         quality_key='describe/accuracy', watch='understanding'),
    dict(type='EvalSampleGridHook', num_images=24, ncols=6),
]
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
