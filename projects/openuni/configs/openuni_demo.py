# The OpenUni demo: RecA on the real OpenUni pieces (transformers InternVL
# with its Qwen2 LLM, a SiglipEncoder connector, diffusers SANA and DC-AE,
# the core flow-matching generator) at a tiny random size, on 32 px shape
# scenes the toolkit renders itself. Runs on a 2-core CPU in under 2 minutes
# and writes a checkpoint, the loss log (loss_recon) and reconstruction /
# prompt sample grids under work_dirs/openuni_demo. InternVL and the DC-AE
# stay frozen, as in the authors' recipe, so there is no image-to-text
# objective: only the meta-queries, connector, projector and SANA train.
#   python tools/train.py projects/openuni/configs/openuni_demo.py
_base_ = [
    './_base_/openuni_tiny.py',
    '../../../configs/_base_/datasets/shapes_demo.py',
    '../../../configs/_base_/demo_runtime.py',
]
custom_imports = dict(imports=['projects.openuni.openuni'],
                      allow_failed_imports=False)
image_size = 32

# No dropout in OpenUni's RecA: every sample keeps its instruction.
model = dict(objectives=dict(
    _delete_=True, recon=dict(type='ReconstructionAlignment', weight=1.0,
                              generic_prob=0.0)))

max_iters = 200
optim_wrapper = dict(
    type='OptimWrapper',
    constructor='DecayGroupsOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.95),
                   weight_decay=0.05),
    clip_grad=dict(max_norm=1.0),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0,
         end=20),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=False, begin=20,
         end=max_iters),
]
# val_begin keeps shortened runs (tests, smoke checks) from validating.
train_cfg = dict(type='ResumableIterBasedTrainLoop', max_iters=max_iters,
                 val_begin=200, val_interval=200)

_views = [dict(type='LoadImage'),
          dict(type='ImageViews', und_size=image_size, gen_size=image_size)]
train_dataloader = dict(batch_size=4, dataset=dict(sources=dict(
    _delete_=True,
    recon=dict(type='ShapeScenes', num_scenes=2000, seed=0,
               pipeline=_views))))
test_dataloader = dict(dataset=dict(source=dict(pipeline=_views)))
# In-training evaluation at the end: a 12-prompt GenEval-Shapes subset.
val_dataloader = dict(dataset=dict(num_prompts=12))
