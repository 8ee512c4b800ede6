"""DPG-Bench: 2 x 2 grids per prompt, scored by ELLA's script or a VQA
judge.

    python tools/eval/dpg_bench.py configs/eval/janus_pro_1b_dpg_bench.py \
        [CHECKPOINT] --out work_dirs/dpg --prompts DIR_OR_JSON --csv CSV
        [--official-scorer PYTHON ELLA_DIR | --vqa-model NAME
         --vqa-base-url URL] [--no-skip-first-question]

The official scorer (mPLUG-large via modelscope) runs in its own
environment: PYTHON is that environment's interpreter, ELLA_DIR a checkout
of TencentQQGYLab/ELLA.
"""
import os.path as osp

from common import parser, run


def main():
    p = parser(__doc__)
    p.add_argument('--prompts', help="ELLA's prompts/ or RecA's prompts.json")
    p.add_argument('--csv', help='dpg_bench.csv')
    p.add_argument('--num-images', type=int)
    p.add_argument('--official-scorer', nargs=2, metavar=('PYTHON',
                                                          'ELLA_DIR'))
    p.add_argument('--vqa-model', help='VQA through an OpenAI-compatible '
                   'judge instead of mPLUG (not the published setting)')
    p.add_argument('--vqa-base-url', default='https://api.openai.com/v1')
    p.add_argument('--no-skip-first-question', action='store_true',
                   help="score the CSV's first question, which upstream "
                   'drops')
    args = p.parse_args()
    if args.official_scorer and args.vqa_model:
        p.error('give --official-scorer or --vqa-model, not both')
    options = {'test_dataloader.dataset.prompts': args.prompts,
               'test_dataloader.dataset.num_images': args.num_images,
               'test_evaluator.question_file': args.csv,
               'test_evaluator.out_dir': args.out}
    overrides = {}
    if args.no_skip_first_question:
        overrides['test_evaluator.skip_first_question'] = False
    if args.official_scorer:
        python, ella = args.official_scorer
        csv = osp.abspath(args.csv) if args.csv else \
            'dpg_bench/dpg_bench.csv'
        overrides['test_evaluator.external_command'] = dict(
            type='ExternalCommand', cwd=ella,
            command=[python, 'dpg_bench/compute_dpg_bench.py',
                     '--image-root-path', '{image_dir}',
                     '--resolution', '{resolution}',
                     '--pic-num', '{pic_num}',
                     '--res-path', '{results_file}', '--csv', csv])
    if args.vqa_model:
        overrides['test_evaluator.external_command'] = None
        overrides['test_evaluator.vqa'] = dict(
            type='JudgeVQA', judge=dict(type='OpenAICompatibleJudge',
                                        model=args.vqa_model,
                                        base_url=args.vqa_base_url))
    run(args, options, overrides)


if __name__ == '__main__':
    main()
