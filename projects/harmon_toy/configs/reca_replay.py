# RecA with text-to-image replay on the tiny Harmon: the Janus toy's
# projects/janus_toy/configs/reca_replay.py (recon:t2i:i2t 1:1:1, batch 48)
# with the Harmon toy and its 64 px understanding view (reca.py).
#   python tools/train.py projects/harmon_toy/configs/reca_replay.py
_base_ = ['../../janus_toy/configs/reca_replay.py', './harmon_toy_umm.py']
custom_imports = dict(imports=['projects.harmon_toy.harmon_toy'],
                      allow_failed_imports=False)

model = dict(umm=dict(_base_.harmon_toy_umm, _delete_=True, type='HarmonUMM',
                      pretrained='projects/harmon_toy/pretrained'))
train_dataloader = dict(dataset=dict(sources=dict(recon=dict(pipeline=[
    dict(type='LoadImage'), dict(type='ImageViews', und_size=64,
                                 gen_size=64)]))))
