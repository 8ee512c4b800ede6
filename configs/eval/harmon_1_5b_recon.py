# Harmon-1.5B reconstruction of held-out images as the RecA authors'
# Harmon/scripts/image_recon.py: the image resized to 512 px (aspect ratio
# ignored) for both the understanding input and the target, the instruction
# "Describe this image in details.", CFG 3.0 against "Generate an image.",
# 64 MAR steps, temperature 1.0.
_base_ = [
    '../_base_/models/harmon_1_5b.py',
    '../_base_/datasets/recon_heldout.py',
    '../_base_/default_runtime.py',
]
model = dict(reconstruct_instruction='Describe this image in details.')
test_dataloader = dict(dataset=dict(source=dict(pipeline=[
    dict(type='LoadImage'),
    dict(type='ImageViews', und_size=512, gen_size=512, mode='stretch'),
])))
custom_hooks = [dict(type='EvalSampleGridHook', num_images=16)]
