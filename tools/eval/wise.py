"""WISE: one image per prompt, judged by an OpenAI-compatible LLM.

    OPENAI_API_KEY=... python tools/eval/wise.py \
        configs/eval/janus_pro_1b_wise.py [CHECKPOINT] --out work_dirs/wise \
        --prompts final_data.json --template judge_template.txt
        [--judge-model gpt-4o-2024-05-13] [--judge-base-url URL]

Reports both overall scores: overall_weighted (official) and
overall_unweighted (RecA's cal_score.py).
"""
from common import parser, run


def main():
    p = parser(__doc__)
    p.add_argument('--prompts', nargs='+', help='WISE json file(s)')
    p.add_argument('--template', help='judge template with <prompt> and '
                   '<explanation>')
    p.add_argument('--judge-model')
    p.add_argument('--judge-base-url')
    args = p.parse_args()
    run(args, {'test_dataloader.dataset.files': args.prompts,
               'test_evaluator.template': args.template,
               'test_evaluator.out_dir': args.out,
               'test_evaluator.judge.model': args.judge_model,
               'test_evaluator.judge.base_url': args.judge_base_url})


if __name__ == '__main__':
    main()
