"""GenEval-Shapes: GenEval's scoring on rendered shape scenes, offline.

Score a model (any UMM config whose test data is GenEval-Shapes, e.g.
configs/eval/geneval_shapes_janus_tiny.py):

    python tools/eval/geneval_shapes.py CONFIG [CHECKPOINT] --out DIR
        [--num-prompts 300] [--num-images 1] [--cfg-options ...]

Check the scorer on ground-truth renders (must print overall 1.0; exits 1
otherwise):

    python tools/eval/geneval_shapes.py --ground-truth --num-prompts 600 \\
        --out DIR [--num-images 1]

Both write the official GenEval layout, results.jsonl and summary.json under
DIR; a model run also writes an evaluation card.
"""
import argparse
import os
import sys
from pathlib import Path

from mmengine.config import DictAction

# projects/ live in the repository: make `projects.<name>` importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', nargs='?', help='model config')
    parser.add_argument('checkpoint', nargs='?', help='checkpoint')
    parser.add_argument('--ground-truth', action='store_true',
                        help='score ground-truth renders instead of a model')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--num-prompts', type=int,
                        help='suite size (config default: 300)')
    parser.add_argument('--num-images', type=int, help='images per prompt')
    parser.add_argument('--suite-seed', type=int, default=0)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm'])
    args = parser.parse_args()
    if args.ground_truth == bool(args.config):
        parser.error('give CONFIG [CHECKPOINT] or --ground-truth')
    return args


def score_ground_truth(args):
    import torch

    from reca_toolkit.datasets import GenEvalShapesPrompts
    from reca_toolkit.evaluation import GenEvalMetric
    prompts = GenEvalShapesPrompts(num_prompts=args.num_prompts or 300,
                                   suite_seed=args.suite_seed,
                                   num_images=args.num_images or 1)
    metric = GenEvalMetric(
        out_dir=args.out, prefix='geneval_shapes',
        detector=dict(type='PaletteShapeDetector'),
        color_classifier=dict(type='PaletteColorClassifier'))
    for index in range(len(prompts)):
        sample = prompts[index]
        images = [torch.from_numpy(prompts.ground_truth(index, j).copy())
                  for j in range(prompts.num_images)]
        sample['pred'] = torch.stack(images).permute(0, 3, 1, 2) / 127.5 - 1
        metric.process(None, [sample])
    return metric.evaluate(len(prompts))


def main():
    args = parse_args()
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    if args.ground_truth:
        metrics = score_ground_truth(args)
    else:
        from reca_toolkit.engine import test
        options = {'test_evaluator.out_dir': os.path.join(args.out, 'images')}
        if args.num_prompts:
            options['test_dataloader.dataset.num_prompts'] = args.num_prompts
        if args.num_images:
            options['test_dataloader.dataset.num_images'] = args.num_images
        options.update(args.cfg_options or {})
        metrics = test(args.config, args.checkpoint, work_dir=args.out,
                       cfg_options=options, launcher=args.launcher)
    for key, value in metrics.items():
        print(f'{key:<40} {value:.4f}')
    overall = metrics['geneval_shapes/overall']
    print(f'overall {overall}')
    if args.ground_truth and overall != 1.0:
        sys.exit(1)


if __name__ == '__main__':
    main()
