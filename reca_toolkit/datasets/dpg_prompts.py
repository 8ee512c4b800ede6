"""DPG-Bench prompts (ELLA): 1,065 dense prompts keyed by item id.

Either ELLA's ``dpg_bench/prompts/<key>.txt`` folder or RecA's repacked
``prompts.json`` (``{key: prompt}``); the question graph that scores them is
the metric's (``dpg_bench.csv``). Files come from the user: see
docs/evaluation.md.
"""
import json
from pathlib import Path

from reca_toolkit.datasets.prompts import PromptDataset, sha256_text
from reca_toolkit.registry import DATASETS


def read_dpg_prompts(path):
    """``{key: prompt}`` from a ``.json`` file or a folder of ``.txt``."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob('*.txt'))
        if not files:
            raise FileNotFoundError(f'{path} holds no DPG-Bench .txt prompts')
        return {f.stem: f.read_text(encoding='utf-8').strip() for f in files}
    if not path.is_file():
        raise FileNotFoundError(f'DPG-Bench prompts {path} do not exist')
    with open(path, encoding='utf-8') as f:
        prompts = json.load(f)
    if not isinstance(prompts, dict) or not all(
            isinstance(v, str) for v in prompts.values()):
        raise ValueError(f'{path} must map item keys to prompt strings')
    # RecA's prompts.json keeps ELLA's file names ("partiprompts97.txt");
    # its generation scripts name images by the stem, as the CSV does.
    stems = {k[:-len('.txt')] if k.endswith('.txt') else k: v
             for k, v in prompts.items()}
    if len(stems) != len(prompts):
        raise ValueError(f'{path} has keys that differ only by ".txt"')
    return stems


@DATASETS.register_module()
class DPGPrompts(PromptDataset):
    """One item per DPG-Bench prompt: ``key`` and ``prompt``, in key order.

    Args:
        prompts: RecA's ``prompts.json`` or ELLA's ``prompts/`` folder.
        num_images: 4 in every RecA script (a 2 x 2 grid in ELLA's).
    """

    def __init__(self, prompts, num_images=4, seed=0, seed_policy='constant',
                 source='dpg'):
        super().__init__(source, num_images, seed, seed_policy)
        self.prompts_path = str(prompts)
        self.prompts = read_dpg_prompts(prompts)
        self.keys = sorted(self.prompts)

    def __len__(self):
        return len(self.keys)

    def item(self, index):
        key = self.keys[index]
        return dict(key=key, prompt=self.prompts[key])

    def prompt_sha256(self):
        return sha256_text(json.dumps(self.prompts, sort_keys=True))

    def card_info(self):
        return dict(super().card_info(), prompt_file=self.prompts_path)
