# The Show-o demo: RecA on the real Show-o pieces (transformers Phi and
# CLIPVisionModel, the mm_projector, the MAGVIT-v2 tokenizer, MaskGIT) at a
# tiny random size, on 32 px shape scenes the toolkit renders itself: the
# CLIP variant, reconstruction plus image-to-text 1:1 as the authors mix
# them. Runs on a 2-core CPU in under 2 minutes and writes a checkpoint, the
# per-objective loss log (loss_recon, loss_i2t) and reconstruction / prompt
# sample grids under work_dirs/showo_demo. Every 100 iterations it scores a
# GenEval-Shapes subset; with a random MAGVIT-v2 expect ~0.
#   python tools/train.py configs/reca/showo_demo.py
_base_ = [
    '../_base_/models/showo_tiny.py',
    '../_base_/datasets/shapes_demo.py',
    '../_base_/schedules/demo_300_adamw.py',
    '../_base_/demo_runtime.py',
]
image_size = 32

_views = [dict(type='LoadImage'),
          dict(type='ImageViews', und_size=image_size, gen_size=image_size)]
train_dataloader = dict(dataset=dict(sources=dict(
    recon=dict(pipeline=_views),
    i2t=dict(pipeline=[dict(type='LoadImage'),
                       dict(type='ImageViews', und_size=image_size)]))))
test_dataloader = dict(dataset=dict(source=dict(pipeline=_views)))
