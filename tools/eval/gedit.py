"""GEdit-Bench (EN): edit every source image, score with VIEScore.

    OPENAI_API_KEY=... python tools/eval/gedit.py \
        configs/eval/janus_pro_1b_gedit.py [CHECKPOINT] --out work_dirs/gedit \
        --annotation gedit.jsonl --image-root DIR --sc-template sc.txt \
        --pq-template pq.txt [--judge-model gpt-4.1-2025-04-14]
        [--judge-base-url URL]

docs/evaluation.md shows how to export the dataset and the two templates.
"""
from common import parser, run


def main():
    p = parser(__doc__)
    p.add_argument('--annotation', help='exported GEdit-Bench jsonl')
    p.add_argument('--image-root', help='folder of the exported images')
    p.add_argument('--sc-template')
    p.add_argument('--pq-template')
    p.add_argument('--judge-model')
    p.add_argument('--judge-base-url')
    args = p.parse_args()
    run(args, {'test_dataloader.dataset.annotation': args.annotation,
               'test_dataloader.dataset.image_root': args.image_root,
               'test_evaluator.sc_template': args.sc_template,
               'test_evaluator.pq_template': args.pq_template,
               'test_evaluator.out_dir': args.out,
               'test_evaluator.judge.model': args.judge_model,
               'test_evaluator.judge.base_url': args.judge_base_url})


if __name__ == '__main__':
    main()
