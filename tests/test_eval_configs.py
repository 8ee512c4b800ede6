"""The evaluation configs check, the tools parse, and GenEval-Shapes' ground
truth check passes from the command line."""
import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from mmengine.config import Config

from conftest import REPO, subprocess_env
from reca_toolkit.engine.config_check import ConfigError, check_config

EVAL_CONFIGS = sorted((REPO / 'configs/eval').glob('*.py'))
TOOLS = sorted(p for p in (REPO / 'tools/eval').glob('*.py')
               if p.name != 'common.py')


@pytest.fixture
def no_disk_checks(monkeypatch):
    """Weights folders and image folders exist only on users' machines."""
    from reca_toolkit.datasets import ImageFolder
    from reca_toolkit.registry import UMMS
    for umm in UMMS.module_dict.values():
        if hasattr(umm, 'validate_config'):
            monkeypatch.setattr(umm, 'validate_config',
                                staticmethod(lambda cfg: None))
    monkeypatch.setattr(ImageFolder, 'validate_config',
                        classmethod(lambda cls, cfg: None))


@pytest.mark.parametrize('path', EVAL_CONFIGS, ids=lambda p: p.stem)
def test_eval_configs_name_registered_types_and_keys(path, no_disk_checks):
    cfg = Config.fromfile(str(path))
    check_config(cfg)
    assert {'test_dataloader', 'test_evaluator', 'test_cfg'} <= set(cfg)


def test_config_check_catches_a_misspelt_scorer(no_disk_checks):
    cfg = Config.fromfile(str(REPO / 'configs/eval/janus_pro_1b_wise.py'))
    cfg.test_evaluator.judge.type = 'OpenAICompatibleJudg'
    with pytest.raises(ConfigError, match='OpenAICompatibleJudge'):
        check_config(cfg)


def test_demo_validates_on_geneval_shapes_during_training():
    cfg = Config.fromfile(str(REPO / 'configs/reca/janus_pro_demo.py'))
    assert cfg.train_cfg.val_interval == 100
    assert cfg.val_dataloader.dataset.type == 'GenEvalShapesPrompts'
    assert cfg.val_evaluator.detector.type == 'PaletteShapeDetector'
    assert 'EvalSampleGridHook' in [h['type'] for h in cfg.custom_hooks]
    check_config(cfg)


@pytest.mark.parametrize('tool', TOOLS, ids=lambda p: p.stem)
def test_eval_tools_parse_their_arguments(tool, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(tool.parent))
    monkeypatch.setattr(sys, 'argv', [str(tool), '--help'])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(tool), run_name='__main__')
    assert exit_.value.code == 0
    assert '--out' in capsys.readouterr().out


def test_geneval_shapes_ground_truth_command_prints_overall_one(tmp_path):
    out = subprocess.run(
        [sys.executable, 'tools/eval/geneval_shapes.py', '--ground-truth',
         '--num-prompts', '60', '--out', str(tmp_path)], cwd=REPO,
        env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == 'overall 1.0'
    assert len([p for p in Path(tmp_path).iterdir() if p.is_dir()]) == 60


OFFICIAL_GENEVAL = '''
import argparse, json, os
p = argparse.ArgumentParser()
p.add_argument('imagedir')
p.add_argument('--outfile')
p.add_argument('--model-path')
args = p.parse_args()
assert args.model_path == 'WEIGHTS'
with open(args.outfile, 'w') as f:
    for sub in sorted(os.listdir(args.imagedir)):
        folder = os.path.join(args.imagedir, sub)
        if sub.isdigit():
            meta = json.load(open(os.path.join(folder, 'metadata.jsonl')))
            for name in sorted(os.listdir(os.path.join(folder, 'samples'))):
                f.write(json.dumps(dict(
                    filename=os.path.join(folder, 'samples', name),
                    tag=meta['tag'], prompt=meta['prompt'], correct=True,
                    reason='', metadata=json.dumps(meta))) + '\\n')
'''


@pytest.mark.parametrize('config, options', [
    ('geneval_shapes_janus_tiny.py', []),
    # Fewer MAR and diffusion steps: the path is the same, in seconds.
    ('geneval_shapes_harmon_tiny.py', ['model.umm.mar.num_iter=2',
                                       'model.umm.mar.head.'
                                       'num_sampling_steps=4'])])
def test_geneval_tool_runs_the_official_scorer_in_its_place(config, options,
                                                           tmp_path,
                                                           monkeypatch):
    geneval = tmp_path / 'geneval'
    (geneval / 'evaluation').mkdir(parents=True)
    (geneval / 'evaluation' / 'evaluate_images.py').write_text(
        OFFICIAL_GENEVAL)
    tool = REPO / 'tools/eval/geneval.py'
    monkeypatch.syspath_prepend(str(tool.parent))
    monkeypatch.setattr(sys, 'argv', [
        str(tool), str(REPO / 'configs/eval' / config),
        '--out', str(tmp_path / 'run'), '--official-scorer', sys.executable,
        str(geneval), 'WEIGHTS', '--cfg-options',
        'test_dataloader.dataset.num_prompts=6', *options])
    runpy.run_path(str(tool), run_name='__main__')
    summary = json.loads((tmp_path / 'run/images/summary.json').read_text())
    assert summary['scores']['overall'] == 1.0
    assert summary['card']['mode'] == 'external'
    assert summary['card']['scorers']['external_command']['command'][0] == \
        sys.executable
