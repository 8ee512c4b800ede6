"""GenEval prompts from a metadata file (``evaluation_metadata.jsonl``).

The 553-prompt file of ``djghosh13/geneval`` is MIT-licensed and ships with
the toolkit (``reca_toolkit/evaluation/prompt_files/``, with its licence);
``metadata_file=None`` selects it.
"""
from pathlib import Path

from reca_toolkit.datasets.prompts import PromptDataset, read_jsonl
from reca_toolkit.registry import DATASETS

GENEVAL_METADATA = (Path(__file__).resolve().parents[1] / 'evaluation' /
                    'prompt_files' / 'geneval_evaluation_metadata.jsonl')


class GenEvalRecords(PromptDataset):
    """Prompts held as GenEval metadata records (``self.records``): one
    item per record, its ``prompt`` and the record itself as ``metadata``,
    which ``GenEvalMetric`` scores against.

    ``prompt_shift`` > 0 gives item ``i`` the prompt of record ``i +
    prompt_shift`` (cyclically) and still scores it against record ``i``:
    what a generator scores without reading its prompt, the floor a gain
    in prompt-following has to clear.
    """

    def __init__(self, source, num_images, seed, seed_policy,
                 prompt_shift=0):
        super().__init__(source, num_images, seed, seed_policy)
        if prompt_shift < 0:
            raise ValueError(f'prompt_shift must be >= 0, got {prompt_shift}')
        self.prompt_shift = prompt_shift

    def __len__(self):
        return len(self.records)

    def item(self, index):
        shown = self.records[(index + self.prompt_shift) % len(self)]
        return dict(prompt=shown['prompt'], metadata=self.records[index])

    def card_info(self):
        return dict(super().card_info(), prompt_shift=self.prompt_shift)


@DATASETS.register_module()
class GenEvalPrompts(GenEvalRecords):
    """The records of a GenEval metadata file.

    Args:
        metadata_file: a GenEval metadata JSON-lines file; None for the
            vendored official one.
        num_images, seed, seed_policy, source: see :class:`PromptDataset`.
        prompt_shift: see :class:`GenEvalRecords`.
    """

    def __init__(self, metadata_file=None, num_images=4, seed=0,
                 seed_policy='constant', source='geneval', prompt_shift=0):
        super().__init__(source, num_images, seed, seed_policy, prompt_shift)
        self.metadata_file = str(metadata_file or GENEVAL_METADATA)
        if not Path(self.metadata_file).is_file():
            raise FileNotFoundError(
                f'GenEval metadata file {self.metadata_file} does not exist')
        self.records = read_jsonl(self.metadata_file,
                                  required=('tag', 'prompt', 'include'))

    def prompt_sha256(self):
        from reca_toolkit.evaluation.scorers.base import file_sha256
        return file_sha256(self.metadata_file)

    def card_info(self):
        return dict(super().card_info(), prompt_file=self.metadata_file)
