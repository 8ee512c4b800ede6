"""The base of benchmark prompt datasets: one item per prompt, with the
seed and the number of images the benchmark's protocol asks for."""
import hashlib
import json

from torch.utils.data import Dataset

from reca_toolkit.registry import TRANSFORMS

SEED_POLICIES = ('constant', 'index')


class PromptDataset(Dataset):
    """Items are dicts of the benchmark's fields plus ``source``, ``index``,
    ``seed`` and ``num_images``; ``RecAModel.predict`` samples
    ``num_images`` images for each with a generator seeded by ``seed``.

    Args:
        source: the data-source name metrics filter on.
        num_images: images per prompt (GenEval upstream 4, RecA 12).
        seed: the base sampling seed.
        seed_policy: ``'constant'`` gives every prompt ``seed`` (the RecA
            scripts' ``set_seed(0)`` per prompt); ``'index'`` gives prompt
            ``i`` the seed ``seed + i`` (repeated prompts then differ).
        pipeline: transforms applied to each item (editing benchmarks load
            their source image with ``LoadImage`` and ``ImageViews``).
    """

    def __init__(self, source, num_images=1, seed=0, seed_policy='constant',
                 pipeline=()):
        if seed_policy not in SEED_POLICIES:
            raise ValueError(f"seed_policy='{seed_policy}' is not one of "
                             f'{SEED_POLICIES}')
        if num_images < 1:
            raise ValueError(f'num_images must be >= 1, got {num_images}')
        self.source = source
        self.num_images = num_images
        self.seed = seed
        self.seed_policy = seed_policy
        self.pipeline = [TRANSFORMS.build(t) if isinstance(t, dict) else t
                         for t in pipeline]

    @property
    def metainfo(self):
        return dict(source=self.source, num_prompts=len(self))

    def item(self, index):
        """The benchmark's fields of prompt ``index``."""
        raise NotImplementedError

    def prompt_sha256(self):
        """A hash that changes whenever the prompts do."""
        raise NotImplementedError

    def seed_of(self, index):
        return self.seed + index if self.seed_policy == 'index' else self.seed

    def __getitem__(self, index):
        results = dict(self.item(index), source=self.source, index=index,
                       seed=self.seed_of(index), num_images=self.num_images)
        for transform in self.pipeline:
            results = transform(results)
        return results

    def card_info(self):
        """What an evaluation card records about the prompts."""
        return dict(dataset=type(self).__name__, source=self.source,
                    num_prompts=len(self), num_images=self.num_images,
                    seed=self.seed, seed_policy=self.seed_policy,
                    prompt_sha256=self.prompt_sha256())


def sha256_text(text):
    return hashlib.sha256(text.encode()).hexdigest()


def read_jsonl(path, required=()):
    """Records of a JSON-lines file; errors name the file and line."""
    records = []
    with open(path, encoding='utf-8') as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f'{path} line {n}: invalid JSON ({e})') \
                    from None
            missing = [k for k in required if k not in record]
            if missing:
                raise ValueError(f'{path} line {n}: missing keys {missing}')
            records.append(record)
    if not records:
        raise ValueError(f'{path} holds no records')
    return records
