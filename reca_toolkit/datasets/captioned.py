"""Captioned images and conversations: an annotation file plus a folder."""
import json
from pathlib import Path

from reca_toolkit.datasets.source import Source
from reca_toolkit.registry import DATASETS

ROLES = {'human': 'user', 'user': 'user', 'gpt': 'assistant',
         'assistant': 'assistant'}


def parse_conversation(messages, where):
    """LLaVA ``[{"from": "human", "value": ...}, ...]`` -> (user, assistant)
    turns, with the ``<image>`` tag removed (the model places the image)."""
    turns = []
    for i in range(0, len(messages) - 1, 2):
        roles = [ROLES.get(m.get('from', m.get('role'))) for m in
                 messages[i:i + 2]]
        if roles != ['user', 'assistant']:
            raise ValueError(f'{where}: conversation turn {i // 2} is not a '
                             f'user message followed by an assistant reply')
        user, reply = (m.get('value', m.get('content', '')) for m in
                       messages[i:i + 2])
        turns.append((user.replace('<image>', '').strip(), reply.strip()))
    if not turns:
        raise ValueError(f'{where}: conversation has no complete turn')
    return turns


@DATASETS.register_module()
class CaptionedImages(Source):
    """Images with captions or conversations, listed in a JSON-lines file.

    Each line (or each element, for a ``.json`` list in the LLaVA layout) is
    ``{"image": "relative/path.jpg", "caption": "..."}`` or
    ``{"image": ..., "conversations": [{"from": "human", "value": ...},
    {"from": "gpt", "value": ...}, ...]}``. A captioned record also yields
    the one-turn conversation ``(caption_question, caption)``.

    Args:
        ann_file: the ``.jsonl`` (or ``.json``) file.
        data_root: folder the image paths are relative to; defaults to the
            annotation file's folder.
        caption_question: the user turn paired with a caption.
        pipeline: transforms; the raw sample has ``img_path`` and
            ``conversations`` (and ``caption`` when the record has one).
    """

    def __init__(self, ann_file, data_root=None,
                 caption_question='Describe this image in detail.',
                 pipeline=()):
        super().__init__(pipeline)
        ann_file = Path(ann_file)
        if not ann_file.is_file():
            raise FileNotFoundError(
                f"annotation file '{ann_file}' does not exist")
        root = Path(data_root) if data_root is not None else ann_file.parent
        self.samples = [
            self._parse(record, root, caption_question, where)
            for record, where in self._records(ann_file)]
        if not self.samples:
            raise ValueError(f"annotation file '{ann_file}' has no records")

    @staticmethod
    def validate_config(cfg):
        if not Path(cfg['ann_file']).is_file():
            raise FileNotFoundError(
                f"annotation file '{cfg['ann_file']}' does not exist")

    @staticmethod
    def _records(ann_file):
        if ann_file.suffix == '.json':
            records = json.loads(ann_file.read_text())
            if not isinstance(records, list):
                raise ValueError(f'{ann_file}: expected a JSON list')
            yield from ((r, f'{ann_file}[{i}]') for i, r in enumerate(records))
            return
        with ann_file.open() as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f'{ann_file}:{number}'
                try:
                    yield json.loads(line), where
                except json.JSONDecodeError as e:
                    raise ValueError(f'{where}: invalid JSON ({e})') from None

    @staticmethod
    def _parse(record, root, caption_question, where):
        if not isinstance(record, dict) or 'image' not in record:
            raise ValueError(f"{where}: record needs an 'image' key")
        sample = dict(img_path=str(root / record['image']))
        if 'caption' in record:
            sample['caption'] = str(record['caption'])
            sample['conversations'] = [(caption_question, sample['caption'])]
        elif 'conversations' in record:
            sample['conversations'] = parse_conversation(
                record['conversations'], where)
        else:
            raise ValueError(
                f"{where}: record needs 'caption' or 'conversations'")
        return sample

    def __len__(self):
        return len(self.samples)

    def raw(self, index):
        return dict(self.samples[index])
