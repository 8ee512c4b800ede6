"""Reconstruction of held-out images: PSNR, SSIM, and LPIPS / rFID when
their feature networks are given.

    python tools/eval/reconstruction.py configs/eval/janus_pro_1b_recon.py \
        [CHECKPOINT] --out work_dirs/recon [--images DIR]
        [--lpips-backbone alexnet.pth [--lpips-heads alex.pth]]
        [--inception inception_v3.safetensors]

LPIPS is torchmetrics' network over a local torchvision AlexNet state dict,
with the linear heads shipped in the torchmetrics wheel unless
``--lpips-heads`` names others; rFID uses torchvision Inception-v3's pooled
features (its numbers are not comparable with pytorch-fid's TF-Inception
FID).
"""
from common import parser, run


def main():
    p = parser(__doc__)
    p.add_argument('--images', help='folder of held-out images')
    p.add_argument('--lpips-backbone',
                   help='torchvision AlexNet weights (local file)')
    p.add_argument('--lpips-heads',
                   help="LPIPS linear heads (local file; default: "
                        "torchmetrics')")
    p.add_argument('--inception', help='Inception-v3 weights (local file)')
    args = p.parse_args()
    options = {'test_dataloader.dataset.source.root': args.images}
    if args.lpips_backbone:
        options['test_evaluator.lpips'] = dict(
            type='LPIPS', weights=args.lpips_backbone,
            heads=args.lpips_heads)
    if args.inception:
        options['test_evaluator.fid_features'] = dict(
            type='TorchvisionFeatures', arch='inception_v3',
            weights=args.inception, nodes=['avgpool'], input_size=299,
            arch_kwargs=dict(aux_logits=True, init_weights=False))
    run(args, options)


if __name__ == '__main__':
    main()
