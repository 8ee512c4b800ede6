"""Image-editing benchmarks: ImgEdit (single-turn) and GEdit-Bench.

Items carry the source image path (``img_path``) and the edit
``instruction``; a pipeline of ``LoadImage`` and ``ImageViews`` turns the
image into the model's understanding view, and ``RecAModel.predict`` edits
it. Neither benchmark's files may be redistributed (ImgEdit has no licence,
its images are LAION-derived; GEdit is a Hugging Face dataset), so both are
read from the user's local copy: docs/evaluation.md says how to make it.
"""
import json
from pathlib import Path

from reca_toolkit.datasets.prompts import (PromptDataset, read_jsonl,
                                           sha256_text)
from reca_toolkit.registry import DATASETS


def _image_path(root, relative, where):
    path = Path(root) / relative
    if not path.is_file():
        raise FileNotFoundError(f'{where}: source image {path} does not '
                                'exist')
    return str(path)


@DATASETS.register_module()
class ImgEditSet(PromptDataset):
    """ImgEdit's ``singleturn.json`` (``{key: {id, prompt, edit_type}}``)
    with its images under ``image_root``; items in key order.

    RecA edits with seed 42 and one image per edit.
    """

    def __init__(self, annotation, image_root, seed=42,
                 seed_policy='constant', pipeline=(), source='imgedit'):
        super().__init__(source, 1, seed, seed_policy, pipeline)
        self.annotation = str(annotation)
        with open(annotation, encoding='utf-8') as f:
            edits = json.load(f)
        self.edits = []
        for key in sorted(edits):
            edit = edits[key]
            missing = [k for k in ('id', 'prompt', 'edit_type')
                       if k not in edit]
            if missing:
                raise ValueError(f"{annotation} key '{key}': missing "
                                 f'{missing}')
            self.edits.append(dict(
                key=key, instruction=edit['prompt'],
                edit_type=edit['edit_type'],
                img_path=_image_path(image_root, edit['id'],
                                     f"{annotation} key '{key}'")))

    def __len__(self):
        return len(self.edits)

    def item(self, index):
        return dict(self.edits[index])

    def prompt_sha256(self):
        return sha256_text(json.dumps(self.edits, sort_keys=True))

    def card_info(self):
        return dict(super().card_info(), prompt_file=self.annotation)


@DATASETS.register_module()
class GEditSet(PromptDataset):
    """GEdit-Bench exported to JSON lines: ``key``, ``task_type``,
    ``instruction``, ``instruction_language``, ``Intersection_exist`` and
    ``image`` (a path under ``image_root``); rows of other languages than
    ``language`` are left out. RecA edits with seed 42.
    """

    FIELDS = ('key', 'task_type', 'instruction', 'instruction_language',
              'Intersection_exist', 'image')

    def __init__(self, annotation, image_root, language='en', seed=42,
                 seed_policy='constant', pipeline=(), source='gedit'):
        super().__init__(source, 1, seed, seed_policy, pipeline)
        self.annotation = str(annotation)
        self.language = language
        self.rows = []
        for n, row in enumerate(read_jsonl(annotation, self.FIELDS), 1):
            if row['instruction_language'] != language:
                continue
            self.rows.append(dict(
                key=str(row['key']), task_type=row['task_type'],
                instruction=row['instruction'],
                instruction_language=row['instruction_language'],
                intersection_exist=bool(row['Intersection_exist']),
                img_path=_image_path(image_root, row['image'],
                                     f'{annotation} line {n}')))
        if not self.rows:
            raise ValueError(f"{annotation} has no rows in language "
                             f"'{language}'")

    def __len__(self):
        return len(self.rows)

    def item(self, index):
        return dict(self.rows[index])

    def prompt_sha256(self):
        return sha256_text(json.dumps(self.rows, sort_keys=True))

    def card_info(self):
        return dict(super().card_info(), prompt_file=self.annotation,
                    language=self.language)
