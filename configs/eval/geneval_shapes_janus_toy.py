# GenEval-Shapes on the pretrained tiny Janus of projects/janus_toy (or on a
# checkpoint of configs/reca/janus_toy.py), with the sampling settings the
# training configs validate with: CFG 2, temperature 1, 16 image tokens.
#   python tools/eval/geneval_shapes.py \
#       configs/eval/geneval_shapes_janus_toy.py [CHECKPOINT] \
#       --out work_dirs/geneval_shapes_toy [--num-prompts 600]
_base_ = [
    '../_base_/datasets/geneval_shapes.py',
    '../_base_/default_runtime.py',
]
# PatchLookupTokenizer is the toy's own component, registered by its project
# package.
custom_imports = dict(imports=['projects.janus_toy.janus_toy'],
                      allow_failed_imports=False)
model = dict(
    type='RecAModel',
    umm=dict(
        type='JanusProUMM',
        pretrained='projects/janus_toy/pretrained',
        weights_dtype='float32',
        trainable_dtype='float32',
        system_prompt='',
        gen_tokenizer=dict(type='PatchLookupTokenizer', grid_size=4),
        generator=dict(type='AutoregressiveCodeGenerator',
                       guidance_scale=2.0, temperature=1.0)),
    objectives=dict(recon=dict(type='ReconstructionAlignment')))
custom_hooks = [dict(type='EvalSampleGridHook', num_images=24, ncols=6)]
env_cfg = dict(dist_cfg=dict(backend='gloo'))
