"""ImgEdit (single-turn): edit every source image, judge each edit.

    OPENAI_API_KEY=... python tools/eval/imgedit.py \
        configs/eval/janus_pro_1b_imgedit.py [CHECKPOINT] \
        --out work_dirs/imgedit --annotation singleturn.json \
        --image-root singleturn/ --judge-prompts judge_prompt.json
        [--judge-model gpt-4o-2024-08-06] [--judge-base-url URL]
"""
from common import parser, run


def main():
    p = parser(__doc__)
    p.add_argument('--annotation', help='singleturn.json')
    p.add_argument('--image-root', help='folder of the source images')
    p.add_argument('--judge-prompts', help='judge_prompt.json')
    p.add_argument('--judge-model')
    p.add_argument('--judge-base-url')
    args = p.parse_args()
    run(args, {'test_dataloader.dataset.annotation': args.annotation,
               'test_dataloader.dataset.image_root': args.image_root,
               'test_evaluator.judge_prompts': args.judge_prompts,
               'test_evaluator.out_dir': args.out,
               'test_evaluator.judge.model': args.judge_model,
               'test_evaluator.judge.base_url': args.judge_base_url})


if __name__ == '__main__':
    main()
