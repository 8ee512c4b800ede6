# The demo with the understanding tokens pooled 2 x 2 (16 -> 4 tokens).
#   python tools/train.py projects/example_project/configs/janus_demo_pooled.py
_base_ = ['../../../configs/reca/janus_pro_demo.py']

custom_imports = dict(
    imports=['projects.example_project.pooled_encoder'],
    allow_failed_imports=False)

model = dict(umm=dict(und_encoder=dict(type='PooledSigLIPEncoder', pool=2)))
