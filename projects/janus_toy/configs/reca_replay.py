# RecA with text-to-image replay: configs/reca/janus_toy.py plus the sparse
# captions of control.py, recon:t2i:i2t 1:1:1 in batches of 48. The RecA
# authors keep text-to-image out of the mix (weight 0); on the tiny model
# that lets RecA overwrite text conditioning (docs/toy_study.md), so this
# asks whether reconstruction adds anything when text-to-image is kept.
# Its equal-compute control is control.py with the same batch of 48
# (t2i:i2t 2:1); projects/toy_study/study.py runs both.
_base_ = ['../../../configs/reca/janus_toy.py']

model = dict(objectives=dict(t2i=dict(type='TextToImage', null_prob=0.1)))
train_dataloader = dict(
    batch_size=48,
    sampler=dict(ratios=dict(t2i=1)),
    dataset=dict(sources=dict(
        t2i=dict(
            type='GenEvalShapesScenes', num_scenes=20000, seed=2,
            include_held_out=True, unnamed_held_out=True,
            sparse=dict(color_drop=0.5, relation_drop=0.7),
            pipeline=[dict(type='LoadImage'),
                      dict(type='ImageViews', gen_size=64)]))))
