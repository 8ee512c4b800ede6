"""Break one behaviour at a time and see whether its tests notice.

    python tools/misc/mutation_check.py                 # every mutation
    python tools/misc/mutation_check.py --group core    # the survival rate
    python tools/misc/mutation_check.py S1 G2 --keep    # a few, keep scratch
    python tools/misc/mutation_check.py --ref HEAD~3    # an older tree's tests
    python tools/misc/mutation_check.py --list

Each mutation replaces one exact snippet of one file with a broken version,
in a scratch copy of the working tree (tracked and untracked, not ignored
files; or of a commit, ``--ref``), and runs the tests that claim to cover
that behaviour with ``pytest -x``. A mutation the tests pass on has
*survived*: the behaviour can break unnoticed. ``core`` mutations cover the
modules the project keeps a survival rate for (docs/testing.md); ``breaks``
are the named breaks that hardened tests were rewritten to catch (issue 16),
kept so that each test's claim stays checked. Not part of CI: on two
cores, ``core`` takes about 10 minutes and ``breaks`` about 20.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[2]


class Mutation(NamedTuple):
    name: str
    path: str
    old: str
    new: str
    tests: tuple
    group: str = 'core'
    what: str = ''


OBJ = 'reca_toolkit/models/objectives/'
RECA = 'reca_toolkit/models/reca.py'
SAMPLERS = 'reca_toolkit/datasets/samplers.py'
LOOPS = 'reca_toolkit/engine/loops.py'
GENEVAL = 'reca_toolkit/evaluation/metrics/geneval.py'

T_OBJ = ('tests/test_objectives.py', )
T_DDP = ('tests/test_distributed.py::test_two_process_ddp_equals_one_process',
         )
T_SAMPLERS = ('tests/test_data.py', )
T_RESUME = ('tests/test_engine_compat.py',
            'tests/test_train_e2e.py::test_resume_auto_is_bit_exact')
T_GENEVAL = ('tests/test_eval_geneval.py', )
T_EVAL_E2E = ('tests/test_eval_e2e.py', )

MUTATIONS = [
    # models/objectives ----------------------------------------------------
    Mutation('O1', OBJ + 'reconstruction.py',
             'if rng.random() < self.generic_prob:',
             'if rng.random() > self.generic_prob:', T_OBJ,
             what='generic instruction share inverted'),
    Mutation('O2', OBJ + 'reconstruction.py',
             "[self.instruction(d) for d in batch['draw']]",
             "[self.instruction(i) for i, _ in enumerate(batch['draw'])]",
             T_OBJ + T_DDP,
             what='instructions keyed by batch position, not stream draw'),
    Mutation('O3', OBJ + 'base.py',
             "{self.seed}:{int(draw)}')",
             "{self.seed}:{int(draw)}:"
             '{__import__("mmengine").dist.get_rank()}\')', T_OBJ + T_DDP,
             what='per-sample RNG keyed by rank'),
    Mutation('O4', OBJ + 'text_to_image.py',
             'random() < self.null_prob', 'random() > self.null_prob', T_OBJ,
             what='null-prompt share inverted'),
    Mutation('O5', OBJ + 'text_to_image.py',
             'torch.where(rows[:, None, None], null.embeds,',
             'torch.where(rows[:, None, None], condition.embeds,', T_OBJ,
             what='null prompt never applied'),
    Mutation('O6', OBJ + 'reconstruction.py',
             'condition = umm.image_condition(\n            embeds,',
             'condition = umm.image_condition(\n            embeds * 0,',
             T_OBJ, what='image embeddings dropped from the condition'),
    Mutation('O7', OBJ + 'image_to_text.py',
             "batch['conversations'])", "batch['conversations'][::-1])",
             ('tests/test_umm_conformance.py::'
              'test_each_answer_is_scored_against_its_own_image', ),
             what='answers paired with the wrong images'),
    # models/reca.py -------------------------------------------------------
    Mutation('R1', RECA, "outputs.pop('loss') * objective.weight",
             "outputs.pop('loss')", T_OBJ, what='objective weight ignored'),
    Mutation('R2', RECA, 'if batch is None or objective.weight == 0:',
             'if batch is None:', T_OBJ,
             what='zero-weight objectives still run'),
    Mutation('R3', RECA,
             "seeds = [int(s) for s in batch['seed']] if 'seed' in batch \\\n"
             '            else [0] * size',
             'seeds = [0] * size', T_EVAL_E2E,
             what="prompts' seeds ignored at prediction"),
    Mutation('R4', RECA,
             "result[key] = value[i]", "result[key] = value[0]",
             T_EVAL_E2E, what="every result carries the first row's fields"),
    Mutation('R5', RECA, 'n = counts[i] if counts else 1', 'n = 1',
             T_EVAL_E2E, what='num_images per prompt ignored'),
    Mutation('R6', RECA,
             "[batch['instruction'][i]] * n, seed=seeds[i])",
             "[batch['instruction'][0]] * n, seed=seeds[i])",
             ('tests/test_eval_judges.py', ) + T_EVAL_E2E,
             what="every edit uses the first row's instruction"),
    # datasets/samplers.py -------------------------------------------------
    Mutation('S1', SAMPLERS,
             'start = (step * self.world_size + self.rank) * count',
             'start = (step * self.world_size + self.world_size - 1 - '
             'self.rank) * count', T_SAMPLERS + T_DDP,
             what="ranks take each other's slice"),
    Mutation('S2', SAMPLERS,
             'start = (step * self.world_size + self.rank) * count',
             'start = (step + self.rank) * count', T_SAMPLERS,
             what='ranks overlap, global batch ignores the world size'),
    Mutation('S3', SAMPLERS, 'hash_seed(self.seed, source, epoch)',
             'hash_seed(self.seed, source, 0)', T_SAMPLERS,
             what='one permutation for every epoch'),
    Mutation('S4', SAMPLERS,
             'if self._perm.get(source, (None, ))[0] != epoch:',
             'if source not in self._perm:', T_SAMPLERS,
             what='cached permutation outlives its epoch'),
    Mutation('S5', SAMPLERS, 'step = self.start_iter', 'step = 0',
             T_SAMPLERS, what='set_start_iter ignored'),
    Mutation('S6', SAMPLERS,
             'order = sorted(ratios, key=lambda s: counts[s] - exact[s])',
             'order = list(ratios)', T_SAMPLERS,
             what='remainders go in insertion order, not largest first'),
    Mutation('S7', SAMPLERS, 'if not self.shuffle:', 'if False:',
             T_SAMPLERS, what='shuffle=False still shuffles'),
    # engine/loops.py ------------------------------------------------------
    Mutation('L1', LOOPS, 'batch_sampler.set_start_iter(self._iter)',
             'batch_sampler.set_start_iter(0)', T_RESUME,
             what='resume restarts the data stream'),
    Mutation('L2', LOOPS, 'if saved is not None and saved != sampler.seed:',
             'if False:', T_RESUME, what='data seed not restored on resume'),
    Mutation('L3', LOOPS, "hub.update_info('data_seed', sampler.seed)",
             'pass', T_RESUME, what='data seed not saved'),
    Mutation('L4', LOOPS, 'and self._iter >= self.val_begin',
             'and self._iter > self.val_begin',
             ('tests/test_engine_compat.py', 'tests/test_janus_toy.py'),
             what='no validation at val_begin'),
    Mutation('L5', LOOPS,
             'for _ in range(self._iter):\n                next(',
             'for _ in range(0):\n                next(', T_RESUME,
             what='fallback resume does not skip consumed batches'),
    Mutation('L6', LOOPS, '\n                         or self._iter == '
             'self._max_iters)', ')',
             ('tests/test_engine_compat.py', 'tests/test_janus_toy.py'),
             what='no validation after the last iteration'),
    # evaluation/metrics/geneval.py ----------------------------------------
    Mutation('G1', GENEVAL,
             "scores['overall'] = float(np.mean(list(scores.values())))",
             "scores['overall'] = float(np.mean([c for v in by_tag.values() "
             'for c in v]))', T_GENEVAL,
             what='overall = mean over images, not over tags'),
    Mutation('G2', GENEVAL, '[any(v) for v in by_prompt.values()]',
             '[all(v) for v in by_prompt.values()]', T_GENEVAL,
             what='prompt accuracy needs all images, not any'),
    Mutation('G3', GENEVAL,
             "[c for v in by_tag.values() for c in v]))\n    scores['prompt",
             "[np.mean(v) for v in by_tag.values()]))\n    scores['prompt",
             T_GENEVAL, what='image accuracy = mean over tags'),
    Mutation('G4', GENEVAL,
             "if metadata['tag'] == 'counting' else self.threshold",
             "if metadata['tag'] == 'counting_' else self.threshold",
             T_GENEVAL, what='counting threshold never applied'),
    Mutation('G5', GENEVAL, 'if relation not in seen:',
             'if relation not in seen and not seen:', T_GENEVAL,
             what='position passes whenever any relation holds'),
    Mutation('G6', GENEVAL, "if found >= req['count']:",
             "if found > req['count']:", T_GENEVAL,
             what='exclude clause off by one'),
    Mutation('G7', GENEVAL, "found = objects.get(name, [])[:count]",
             "found = objects.get(name, [])", T_GENEVAL,
             what='colour checked on every detection, not the top count'),
    Mutation('G8', GENEVAL,
             "by_prompt.setdefault(r['prompt_index'], [])",
             "by_prompt.setdefault(r['tag'], [])", T_GENEVAL,
             what='prompt accuracy grouped by tag'),
    Mutation('G9', GENEVAL, 'if missing or extra:', 'if False:', T_GENEVAL,
             what="external results that do not match the run are used"),
    Mutation('G10', GENEVAL,
             'correct, reason = evaluate(objects, metadata, classify_colors,'
             '\n                                   self.position_margin)',
             'correct, reason = evaluate(objects, metadata, classify_colors,'
             '\n                                   0.0)', T_GENEVAL,
             what="the metric's position_margin ignored"),
    # Named breaks of issue 16: each hardened test against its break --------
    Mutation('B1', 'reca_toolkit/engine/compat.py',
             '    _APPLIED = True',
             '    mm_runner.Runner.resume = functools.partialmethod('
             'mm_runner.Runner.resume, resume_param_scheduler=False)\n'
             '    _APPLIED = True',
             ('tests/test_train_e2e.py::test_resume_auto_is_bit_exact', ),
             'breaks', 'the learning-rate schedule restarts on resume'),
    Mutation('B2', 'reca_toolkit/engine/compat.py',
             '    _APPLIED = True',
             '    mm_runner.Runner.resume = functools.partialmethod('
             'mm_runner.Runner.resume, resume_optimizer=False)\n'
             '    _APPLIED = True',
             ('tests/test_train_e2e.py::test_resume_auto_is_bit_exact', ),
             'breaks', 'the optimizer state is not resumed'),
    Mutation('B3', 'reca_toolkit/engine/compat.py',
             '    _APPLIED = True',
             '    from mmengine.runner._flexible_runner import '
             'FlexibleRunner\n'
             '    FlexibleRunner.resume = functools.partialmethod('
             'FlexibleRunner.resume, resume_param_scheduler=False)\n'
             '    _APPLIED = True',
             ('tests/test_fsdp.py::test_fsdp_resume_continues_the_run_exactly',
              ), 'breaks', 'the schedule restarts on an FSDP resume'),
    Mutation('B4', 'reca_toolkit/models/losses.py',
             '    return values.sum() * world / count.clamp(min=1)',
             '    mean = values.sum() * world / count.clamp(min=1)\n'
             '    return mean * world - mean.detach() * (world - 1)',
             T_DDP, 'breaks',
             'DDP gradient doubled, logged losses unchanged'),
    Mutation('B5', 'tests/netguard/netguard.py',
             'def check(address):\n',
             'def check(address):\n    return\n',
             ('tests/test_network_guard.py', ), 'breaks',
             'the network guard lets every connection through'),
    Mutation('B6', 'tests/conftest.py',
             'os.pathsep.join([str(NETGUARD), ',
             'os.pathsep.join([',
             ('tests/test_network_guard.py', ), 'breaks',
             'subprocesses start without the network guard'),
    Mutation('B7', 'reca_toolkit/evaluation/card.py',
             'metrics={k: float(v) if',
             'metrics={k: round(float(v), 1) if', T_EVAL_E2E, 'breaks',
             'the card records metrics rounded'),
    Mutation('B8', 'reca_toolkit/registry.py',
             '        obj = super().get(key)',
             "        obj = super().get({'ImageToText': 'TextToImage'}"
             '.get(key, key))',
             ('tests/test_registry.py::test_component_builds_from_config', ),
             'breaks', 'a registered name builds another class'),
    Mutation('B9', 'reca_toolkit/engine/benchmark.py',
             "counted = model_flops(cfg.model.to_dict(), batches[0])",
             "counted = model_flops(cfg.model.to_dict(), batches[0])\n"
             "    counted['flops'] /= 3",
             ('tests/test_perf_tools.py::'
              'test_benchmark_reports_throughput_and_baseline', ), 'breaks',
             'benchmark counts forward FLOPs only'),
    Mutation('B10', 'reca_toolkit/engine/memory_estimate.py',
             'optimizer, optimizer_bytes = _optimizer_bytes(cfg, trainable)',
             'optimizer, optimizer_bytes = _optimizer_bytes(cfg, params)',
             ('tests/test_perf_tools.py', ), 'breaks',
             'estimate gives frozen parameters optimizer states'),
    Mutation('B11', 'reca_toolkit/datasets/image_folder.py',
             "root.glob('**/*' if recursive else '*')", "root.glob('*')",
             ('tests/test_train_e2e.py::test_trains_from_an_image_folder', ),
             'breaks', 'images in sub-folders are not found'),
    Mutation('B12', 'reca_toolkit/engine/optim_constructor.py',
             'if param.requires_grad and id(param) not in seen:',
             'if param.requires_grad and id(param) not in seen and False:',
             ('tests/test_projects.py::test_example_project_trains', ),
             'breaks', 'the optimizer gets no parameters: nothing trains'),
    Mutation('B13', SAMPLERS,
             'start = (step * self.world_size + self.rank) * count',
             'start = (step * self.world_size + self.world_size - 1 - '
             'self.rank) * count',
             ('tests/test_distributed.py::'
              'test_each_rank_trains_on_its_slice_of_the_single_process_batch',
              ), 'breaks', "ranks swap slices: the average loss is the same"),
]


def scratch_copy(dest, ref=None):
    """The working tree's tracked and untracked, not ignored, files; or
    the tree of commit ``ref``."""
    if ref is not None:
        archive = subprocess.run(['git', 'archive', ref], cwd=REPO,
                                 capture_output=True, check=True).stdout
        subprocess.run(['tar', '-x', '-C', str(dest)], input=archive,
                       check=True)
        return
    listed = subprocess.run(
        ['git', 'ls-files', '--cached', '--others', '--exclude-standard',
         '-z'], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split('\0')):
        source = REPO / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def scratch_env(scratch):
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE='1')
    env['PYTHONPATH'] = os.pathsep.join(
        [str(scratch)] + [p for p in env.get('PYTHONPATH', '').split(
            os.pathsep) if p])
    return env


def check_imports_scratch(scratch, env):
    """An editable install must not shadow the mutated copy."""
    found = subprocess.run(
        [sys.executable, '-c', 'import reca_toolkit; print(reca_toolkit.'
         '__file__)'], cwd=scratch, env=env, capture_output=True, text=True,
        check=True).stdout.strip()
    if not Path(found).resolve().is_relative_to(scratch.resolve()):
        raise SystemExit(f'reca_toolkit imports from {found}, not from the '
                         f'scratch copy {scratch}')


def run_mutation(mutation, scratch, env, timeout):
    path = scratch / mutation.path
    if not path.is_file():
        return dict(status='stale', detail=f'no file {mutation.path}')
    original = path.read_text()
    if original.count(mutation.old) != 1:
        return dict(status='stale', detail=f'{mutation.path} holds the '
                    f'snippet {original.count(mutation.old)} times, not once')
    path.write_text(original.replace(mutation.old, mutation.new))
    start = time.time()
    try:
        proc = subprocess.run(
            [sys.executable, '-m', 'pytest', '-x', '-q', '-p',
             'no:cacheprovider', *mutation.tests], cwd=scratch, env=env,
            capture_output=True, text=True, timeout=timeout)
        code, output = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired:
        code, output = 'timeout', ''
    finally:
        path.write_text(original)
    seconds = round(time.time() - start)
    if code == 0:
        return dict(status='survived', seconds=seconds)
    if code in (1, 'timeout'):
        failed = re.search(r'^(?:FAILED|ERROR) (\S+)', output, re.M)
        return dict(status='killed', seconds=seconds,
                    detail=failed.group(1) if failed else str(code),
                    output=output[-3000:])
    return dict(status='error', seconds=seconds,
                detail=f'pytest exit {code}: {output[-500:]}')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('names', nargs='*', help='mutations to run')
    parser.add_argument('--group', choices=['core', 'breaks'])
    parser.add_argument('--list', action='store_true')
    parser.add_argument('--ref', help='mutate this commit, not the working '
                        'tree (a survival rate before a change)')
    parser.add_argument('--keep', action='store_true',
                        help='keep the scratch copy')
    parser.add_argument('--timeout', type=int, default=900,
                        help='seconds per mutation; a timeout kills it')
    parser.add_argument('--json', help='write the results here')
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS
              if (not args.names or m.name in args.names)
              and (args.group is None or m.group == args.group)]
    unknown = set(args.names) - {m.name for m in MUTATIONS}
    if unknown:
        raise SystemExit(f'unknown mutations: {sorted(unknown)}')
    if args.list:
        for m in chosen:
            print(f'{m.name:4} {m.group:6} {m.path}: {m.what}')
        return
    scratch = Path(tempfile.mkdtemp(prefix='reca_mutation_'))
    results = {}
    try:
        scratch_copy(scratch, args.ref)
        env = scratch_env(scratch)
        check_imports_scratch(scratch, env)
        for m in chosen:
            result = run_mutation(m, scratch, env, args.timeout)
            results[m.name] = dict(result, group=m.group, what=m.what)
            detail = f"  <- {result['detail']}" if 'detail' in result \
                else ''
            print(f"{m.name:4} {result['status']:8} "
                  f"{result.get('seconds', 0):4}s  {m.what}{detail}",
                  flush=True)
    finally:
        if args.keep:
            print(f'scratch copy kept in {scratch}')
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    for group in ('core', 'breaks'):
        ran = [r for r in results.values() if r['group'] == group
               and r['status'] in ('killed', 'survived')]
        if ran:
            survived = sum(r['status'] == 'survived' for r in ran)
            print(f'{group}: {survived}/{len(ran)} survived '
                  f'({100 * survived / len(ran):.0f}%)')
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + '\n')
    bad = [n for n, r in results.items() if r['status'] in ('stale', 'error')]
    if bad:
        raise SystemExit(f'could not run: {bad}')


if __name__ == '__main__':
    main()
