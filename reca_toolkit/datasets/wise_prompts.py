"""WISE prompts: world-knowledge text-to-image prompts with explanations.

``final_data.json`` (all 1,000) or the per-category files of
``PKU-YuanGroup/WISE`` (``data/*.json``, also ``*_rewrite.json``); each
record has ``prompt_id``, ``Prompt``, ``Explanation`` and ``Subcategory``.
The repository has no licence, so the files come from the user.
"""
import json
from pathlib import Path

from reca_toolkit.datasets.prompts import PromptDataset, sha256_text
from reca_toolkit.registry import DATASETS

FIELDS = ('prompt_id', 'Prompt', 'Explanation', 'Subcategory')


@DATASETS.register_module()
class WISEPrompts(PromptDataset):
    """One item per WISE record, ordered by ``prompt_id``: ``prompt_id``,
    ``prompt``, ``explanation`` and ``subcategory``.

    Args:
        files: one JSON file or a list of them.
        num_images: 1 in the RecA scripts.
    """

    def __init__(self, files, num_images=1, seed=0, seed_policy='constant',
                 source='wise'):
        super().__init__(source, num_images, seed, seed_policy)
        self.files = [str(f) for f in
                      ([files] if isinstance(files, (str, Path)) else files)]
        records = {}
        for path in self.files:
            with open(path, encoding='utf-8') as f:
                data = json.load(f)
            for i, record in enumerate(data):
                missing = [k for k in FIELDS if k not in record]
                if missing:
                    raise ValueError(f'{path} record {i}: missing {missing}')
                if record['prompt_id'] in records:
                    raise ValueError(f"{path} record {i}: prompt_id "
                                     f"{record['prompt_id']} appears twice")
                records[record['prompt_id']] = record
        self.records = [records[k] for k in sorted(records)]

    def __len__(self):
        return len(self.records)

    def item(self, index):
        r = self.records[index]
        return dict(prompt_id=r['prompt_id'], prompt=r['Prompt'],
                    explanation=r['Explanation'],
                    subcategory=r['Subcategory'])

    def prompt_sha256(self):
        return sha256_text(json.dumps(self.records, sort_keys=True))

    def card_info(self):
        return dict(super().card_info(), prompt_file=self.files)
