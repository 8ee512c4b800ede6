# GenEval-Shapes on the demo's tiny Janus (64 px, 16 image tokens, CFG 5,
# temperature 1). Its VQ-VAE is random, so scores are ~0: this config proves
# the path from prompts to scores, not a model.
#   python tools/eval/geneval_shapes.py \
#       configs/eval/geneval_shapes_janus_tiny.py [CHECKPOINT] \
#       --out work_dirs/geneval_shapes
_base_ = [
    '../_base_/models/janus_tiny.py',
    '../_base_/datasets/geneval_shapes.py',
    '../_base_/default_runtime.py',
]
custom_hooks = [dict(type='EvalSampleGridHook', num_images=16)]
env_cfg = dict(dist_cfg=dict(backend='gloo'))
