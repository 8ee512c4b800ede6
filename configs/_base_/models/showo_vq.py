# Show-o-512 without CLIP (showlab/show-o-512x512), the RecA authors' VQ
# variant (HorizonWind2004/reconstruction-alignment, Show-o/configs/
# showo_reca.yaml and training/train_recon.py): the understanding embeddings
# are the token embeddings of the MAGVIT-v2 codes of the image downscaled x2
# (256 px: 256 codes); vq_downscale=8, vq_resize_back=True is the authors'
# "blur8" (showo_reca_blur8.yaml: the image downscaled x8 and resized back,
# 1024 codes of a blurred image). Only MAGVIT-v2 is frozen; image-to-text
# sees the MAGVIT-v2 codes of the image too.
_base_ = ['./showo_512.py']
model = dict(umm=dict(
    pretrained='checkpoints/Show-o-512-VQ',
    understanding='vq',
    frozen=['magvit'],
    vq_downscale=2,
    vq_resize_back=False,
    # showo_reca.yaml's max_seq_length; its pads lead the prompt, so only
    # truncation depends on it.
    max_text_length=381))
