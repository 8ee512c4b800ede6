"""GenEval: generate in the official layout and score it.

    python tools/eval/geneval.py configs/eval/janus_pro_1b_geneval.py \
        [CHECKPOINT] --out work_dirs/geneval [--metadata FILE]
        [--num-images 12] [--detector-config PY --detector-weights W
         --clip-weights W | --official-scorer PYTHON GENEVAL_DIR WEIGHTS_DIR]

Native scoring (default) runs Mask2Former and CLIP here from local weights;
--official-scorer instead runs djghosh13/geneval's evaluate_images.py with
the given interpreter (its own environment) and parses its results.jsonl.
"""
import os.path as osp

from common import parser, run


def main():
    p = parser(__doc__)
    p.add_argument('--metadata', help='metadata jsonl (default: vendored)')
    p.add_argument('--num-images', type=int, help='images per prompt')
    p.add_argument('--detector-config')
    p.add_argument('--detector-weights')
    p.add_argument('--clip-weights')
    p.add_argument('--official-scorer', nargs=3,
                   metavar=('PYTHON', 'GENEVAL_DIR', 'WEIGHTS_DIR'))
    args = p.parse_args()
    if args.official_scorer and (args.detector_config or args.detector_weights
                                 or args.clip_weights):
        p.error('--official-scorer brings its own detector and CLIP; give '
                'no --detector-* or --clip-weights with it')
    options = {
        'test_dataloader.dataset.metadata_file': args.metadata,
        'test_dataloader.dataset.num_images': args.num_images,
        'test_evaluator.out_dir': osp.join(args.out, 'images'),
        'test_evaluator.detector.config': args.detector_config,
        'test_evaluator.detector.checkpoint': args.detector_weights,
        'test_evaluator.color_classifier.checkpoint': args.clip_weights,
    }
    overrides = {}
    if args.official_scorer:
        python, geneval_dir, weights = args.official_scorer
        options = {k: v for k, v in options.items()
                   if 'detector' not in k and 'color' not in k}
        overrides = {
            'test_evaluator.detector': None,
            'test_evaluator.color_classifier': None,
            'test_evaluator.external_command': dict(
                type='ExternalCommand', cwd=geneval_dir,
                command=[python, 'evaluation/evaluate_images.py',
                         '{image_dir}', '--outfile', '{results_file}',
                         '--model-path', weights])}
    run(args, options, overrides)


if __name__ == '__main__':
    main()
