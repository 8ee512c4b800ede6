# The equal-compute control of reca.py on the tiny Harmon: the Janus toy's
# control (projects/janus_toy/configs/control.py: the same images' sparse
# captions in place of reconstruction) with the Harmon toy.
#   python tools/train.py projects/harmon_toy/configs/control.py
_base_ = ['../../janus_toy/configs/control.py', './harmon_toy_umm.py']
custom_imports = dict(imports=['projects.harmon_toy.harmon_toy'],
                      allow_failed_imports=False)

model = dict(umm=dict(_base_.harmon_toy_umm, _delete_=True, type='HarmonUMM',
                      pretrained='projects/harmon_toy/pretrained'))
