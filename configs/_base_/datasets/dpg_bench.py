# DPG-Bench (ELLA; 1,065 prompts) with the RecA protocol: 4 images per
# prompt, seed 0, one 2 x 2 grid per prompt, the first CSV question dropped
# as upstream does. Scored by ELLA's compute_dpg_bench.py (mPLUG-large via
# modelscope) in its own environment; files under data/dpg_bench.
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='reca_toolkit.collate_by_source'),
    dataset=dict(type='DPGPrompts', prompts='data/dpg_bench/prompts',
                 num_images=4, seed=0, seed_policy='constant'))
test_evaluator = dict(
    type='DPGMetric',
    question_file='data/dpg_bench/dpg_bench.csv',
    out_dir='work_dirs/dpg_bench',
    layout='grid',
    skip_first_question=True,
    external_command=dict(
        type='ExternalCommand',
        cwd='third_party/ELLA',
        command=['/opt/envs/dpg/bin/python', 'dpg_bench/compute_dpg_bench.py',
                 '--image-root-path', '{image_dir}',
                 '--resolution', '{resolution}', '--pic-num', '{pic_num}',
                 '--res-path', '{results_file}',
                 '--csv', 'dpg_bench/dpg_bench.csv']))
test_cfg = dict(type='TestLoop')
