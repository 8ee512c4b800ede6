# The BAGEL demo: RecA on the real BAGEL pieces (the Qwen2 Mixture-of-
# Transformers, transformers SiglipVisionModel, a FLUX-shaped diffusers
# AutoencoderKL, flow matching) at a tiny random size, on 32 px shape scenes
# the toolkit renders itself, with the authors' recipe shape: reconstruction
# only (no CE), the text split dropped 10% of the time, ViT, connector, VAE
# and the understanding expert frozen. Runs on a 2-core CPU in under 3
# minutes and writes a checkpoint, the loss log and reconstruction, prompt
# and edit sample grids under work_dirs/bagel_demo. The grids cannot look
# like the scenes: a random VAE does not decode even its own latents back
# (mean error 0.26 on [-1, 1] pixels); the falling loss is what the demo
# shows.
#   python tools/train.py configs/reca/bagel_demo.py
_base_ = [
    '../_base_/models/bagel_tiny.py',
    '../_base_/datasets/shapes_demo.py',
    '../_base_/demo_runtime.py',
]
image_size = 32

model = dict(objectives=dict(_delete_=True, recon=dict(
    type='ReconstructionAlignment', weight=1.0, generic_prob=0.1)))

max_iters = 200
optim_wrapper = dict(
    type='OptimWrapper',
    constructor='DecayGroupsOptimWrapperConstructor',
    # The authors' AdamW (eps 1e-15, no weight decay) at a tiny model's lr.
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.95), eps=1e-15,
                   weight_decay=0.0),
    clip_grad=dict(max_norm=1.0),
)
# Warm-up, then constant (no scheduler after it), as the authors'.
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0,
         end=30),
]
train_cfg = dict(type='ResumableIterBasedTrainLoop', max_iters=max_iters)
val_cfg = None
val_dataloader = None
val_evaluator = None

_views = [dict(type='LoadImage'),
          dict(type='ImageViews', und_size=image_size, gen_size=image_size)]
train_dataloader = dict(dataset=dict(sources=dict(
    _delete_=True,
    recon=dict(type='ShapeScenes', num_scenes=2000, seed=0,
               pipeline=_views))))
test_dataloader = dict(dataset=dict(source=dict(pipeline=_views)))

# No validation, so no validation grid; edits show BAGEL's editing.
custom_hooks = [
    dict(type='SampleGridHook', interval=100, num_images=8,
         prompts=['a red circle at the top left',
                  'a blue square and a yellow triangle'],
         edits=['make the background white', 'add a red circle']),
    dict(type='SkippedImagesHook'),
]
