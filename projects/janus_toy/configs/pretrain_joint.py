# The shipped tiny Janus, projects/janus_toy/pretrained (iteration 2 of
# docs/toy_study.md): pretraining as in pretrain.py plus image-conditioned
# generation, so that the generator already reads the model's understanding
# embeddings before RecA -- as UMMs pretrained on editing or interleaved data
# do. Its images hold TRAINING pairs only: the held-out pairs first reach
# image-conditioned generation in RecA. Model card: projects/janus_toy/README.md
#   python tools/train.py projects/janus_toy/configs/pretrain_joint.py
_base_ = ['./pretrain.py']

model = dict(objectives=dict(recon=dict(type='ReconstructionAlignment')))
# t2i 16, recon 8, i2t 8, i2t at 32 px 8: pretrain.py's batch plus recon.
train_dataloader = dict(
    batch_size=40,
    sampler=dict(ratios=dict(recon=1)),
    dataset=dict(sources=dict(recon=dict(
        type='GenEvalShapesScenes', num_scenes=20000, seed=3,
        include_held_out=False,
        pipeline=[dict(type='LoadImage'),
                  dict(type='ImageViews', und_size=32, gen_size=64)]))))
