# The embedded demo: RecA on the real transformers Janus classes in a tiny
# random configuration, on shape scenes the toolkit renders itself. Runs on
# a 2-core CPU in about a minute and writes a checkpoint, the loss log and
# reconstruction / prompt sample grids under work_dirs/janus_pro_demo.
# Every 100 iterations it scores a GenEval-Shapes subset (scalars
# geneval_shapes/*, grid val_samples); with the random VQ-VAE expect ~0.
#   python tools/train.py configs/reca/janus_pro_demo.py
_base_ = [
    '../_base_/models/janus_tiny.py',
    '../_base_/datasets/shapes_demo.py',
    '../_base_/demo_runtime.py',
    '../_base_/schedules/demo_300_adamw.py',
]

# The demo schedule, at twice its learning rate.
optim_wrapper = dict(optimizer=dict(lr=2e-3))
