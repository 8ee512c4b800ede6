# GenEval-Shapes on the Harmon demo's tiny model (32 px, an 8 x 8 latent
# grid: 64 tokens, CFG 3 against "Generate an image.", 8 MAR steps x 20
# diffusion steps). Its VAE is random, so scores are ~0: this config proves
# the path from prompts to scores, not a model.
#   python tools/eval/geneval_shapes.py \
#       configs/eval/geneval_shapes_harmon_tiny.py [CHECKPOINT] \
#       --out work_dirs/geneval_shapes_harmon
_base_ = [
    '../_base_/models/harmon_tiny.py',
    '../_base_/datasets/geneval_shapes.py',
    '../_base_/default_runtime.py',
]
custom_hooks = [dict(type='EvalSampleGridHook', num_images=16)]
env_cfg = dict(dist_cfg=dict(backend='gloo'))
