# Harmon-1.5B on dpg_bench with the RecA authors' sampling (Harmon/scripts/
# dpgbench.py of HorizonWind2004/reconstruction-alignment): 512 px,
# "Generate an image: {p}", CFG 3.0 constant against "Generate an image.",
# 64 MAR steps, temperature 1.0, 100 diffusion steps
# (configs/_base_/models/harmon_1_5b.py); 4 images per prompt, seed 0 per
# prompt (the script sets no seed; the RecA protocol of
# configs/_base_/datasets/dpg_bench.py does).
_base_ = [
    '../_base_/models/harmon_1_5b.py',
    '../_base_/datasets/dpg_bench.py',
    '../_base_/default_runtime.py',
]
# The authors' layout: one file per image, <key>_<i>.png, each scored by
# their modified compute_dpg_bench.py (Benchmark/dpgbench/ of the RecA
# repository), not ELLA's 2 x 2 grid.
test_evaluator = dict(
    layout='separate',
    external_command=dict(
        cwd='third_party/reconstruction-alignment/Benchmark',
        command=['/opt/envs/dpg/bin/python', 'dpgbench/compute_dpg_bench.py',
                 '--image-root-path', '{image_dir}',
                 '--resolution', '{resolution}', '--pic-num', '{pic_num}',
                 '--res-path', '{results_file}',
                 '--csv', 'dpgbench/dpg_bench.csv']))
custom_hooks = [dict(type='EvalSampleGridHook', num_images=16)]
