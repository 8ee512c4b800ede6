"""DPG-Bench, scored by the official script of the config's layout or a
VQA judge.

    python tools/eval/dpg_bench.py configs/eval/janus_pro_1b_dpg_bench.py \
        [CHECKPOINT] --out work_dirs/dpg --prompts DIR_OR_JSON --csv CSV
        [--official-scorer PYTHON CHECKOUT | --vqa-model NAME
         --vqa-base-url URL] [--no-skip-first-question]

The official scorer (mPLUG-large via modelscope) runs in its own
environment: PYTHON is that environment's interpreter, CHECKOUT the
checkout of the script the config's ``layout`` needs: 'grid' (2 x 2 grids)
TencentQQGYLab/ELLA, 'separate' (one file per image) the RecA authors'
HorizonWind2004/reconstruction-alignment.
"""
import os.path as osp

from common import parser, run
from mmengine.config import Config

# layout -> the official script, relative to its checkout: (cwd, script,
# its default question file, relative to cwd)
OFFICIAL_SCRIPTS = dict(
    grid=('.', 'dpg_bench/compute_dpg_bench.py', 'dpg_bench/dpg_bench.csv'),
    separate=('Benchmark', 'dpgbench/compute_dpg_bench.py',
              'dpgbench/dpg_bench.csv'))


def official_command(layout, python, checkout, csv=None):
    """The official script of ``layout`` as an ``ExternalCommand``."""
    cwd, script, default_csv = OFFICIAL_SCRIPTS[layout]
    return dict(type='ExternalCommand', cwd=osp.join(checkout, cwd),
                command=[python, script,
                         '--image-root-path', '{image_dir}',
                         '--resolution', '{resolution}',
                         '--pic-num', '{pic_num}',
                         '--res-path', '{results_file}',
                         '--csv', osp.abspath(csv) if csv else default_csv])


def main():
    p = parser(__doc__)
    p.add_argument('--prompts', help="ELLA's prompts/ or RecA's prompts.json")
    p.add_argument('--csv', help='dpg_bench.csv')
    p.add_argument('--num-images', type=int)
    p.add_argument('--official-scorer', nargs=2, metavar=('PYTHON',
                                                          'CHECKOUT'))
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
        python, checkout = args.official_scorer
        cfg = Config.fromfile(args.config)
        cfg.merge_from_dict(args.cfg_options or {})
        layout = cfg.test_evaluator.get('layout', 'grid')
        overrides['test_evaluator.external_command'] = official_command(
            layout, python, checkout, args.csv)
    if args.vqa_model:
        overrides['test_evaluator.external_command'] = None
        overrides['test_evaluator.vqa'] = dict(
            type='JudgeVQA', judge=dict(type='OpenAICompatibleJudge',
                                        model=args.vqa_model,
                                        base_url=args.vqa_base_url))
    run(args, options, overrides)


if __name__ == '__main__':
    main()
