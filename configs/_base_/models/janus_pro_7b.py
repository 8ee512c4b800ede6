_base_ = ['./janus_pro_1b.py']

model = dict(umm=dict(pretrained='checkpoints/Janus-Pro-7B'))
