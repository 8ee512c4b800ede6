# RecA on the tiny Harmon (projects/harmon_toy/pretrained): the Janus toy's
# RecA config (configs/reca/janus_toy.py: the same scenes, mix, steps,
# learning rate and evaluation) with the Harmon toy in place of the Janus
# one. Harmon's understanding embeddings are its MAR encoder over the
# generation latents of the whole image, so the understanding view is the
# 64 px scene itself, as upstream, where both are the same 512 px image
# (HorizonWind2004/reconstruction-alignment, Harmon/src/models/harmon_dev.py).
#   python tools/train.py projects/harmon_toy/configs/reca.py
_base_ = ['../../../configs/reca/janus_toy.py', './harmon_toy_umm.py']
custom_imports = dict(imports=['projects.harmon_toy.harmon_toy'],
                      allow_failed_imports=False)

model = dict(umm=dict(_base_.harmon_toy_umm, _delete_=True, type='HarmonUMM',
                      pretrained='projects/harmon_toy/pretrained'))
train_dataloader = dict(dataset=dict(sources=dict(recon=dict(pipeline=[
    dict(type='LoadImage'), dict(type='ImageViews', und_size=64,
                                 gen_size=64)]))))
