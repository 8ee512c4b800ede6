# The Harmon demo: RecA on the real Harmon pieces (transformers Qwen2,
# diffusers AutoencoderKL, the MAR generator and diffusion head) at a tiny
# random size, on 32 px shape scenes the toolkit renders itself. Runs on a
# 2-core CPU in under 2 minutes and writes a checkpoint, the per-objective
# loss log (loss_recon, loss_i2t) and reconstruction / prompt sample grids
# under work_dirs/harmon_demo. Every 100 iterations it scores a
# GenEval-Shapes subset; with a random VAE expect ~0.
#   python tools/train.py configs/reca/harmon_demo.py
_base_ = [
    '../_base_/models/harmon_tiny.py',
    '../_base_/datasets/shapes_demo.py',
    '../_base_/demo_runtime.py',
    '../_base_/schedules/demo_300_adamw.py',
]
image_size = 32

_views = [dict(type='LoadImage'),
          dict(type='ImageViews', und_size=image_size, gen_size=image_size)]
train_dataloader = dict(dataset=dict(sources=dict(
    recon=dict(pipeline=_views),
    i2t=dict(pipeline=[dict(type='LoadImage'),
                       dict(type='ImageViews', und_size=image_size)]))))
test_dataloader = dict(dataset=dict(source=dict(pipeline=_views)))
