# Show-o-256 with CLIP-ViT (showlab/show-o-w-clip-vit): the 512 model's
# architecture at 256 px (256 codes), from its own folder (RecA repository,
# Show-o/configs/showo_reca_256_clip.yaml).
_base_ = ['./showo_512.py']
model = dict(umm=dict(pretrained='checkpoints/Show-o-256', image_size=256))
