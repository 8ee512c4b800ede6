"""RecA: regenerate an image from the model's own understanding of it."""
from reca_toolkit.models.objectives.base import Objective
from reca_toolkit.models.objectives.instructions import (DEFAULT_POOL,
                                                          load_instructions)
from reca_toolkit.registry import OBJECTIVES


@OBJECTIVES.register_module()
class ReconstructionAlignment(Objective):
    """``generation_loss(template(encode_understanding(x_und), instruction),
    x_gen)``.

    The understanding view ``und_pixels`` and the generation target
    ``gen_pixels`` are two views of one unlabeled image. Each sample pairs
    its embeddings with an instruction drawn from the pool; with probability
    ``generic_prob`` the instruction is ``generic_instruction`` instead. As
    in every official RecA recipe, the image embeddings are never dropped:
    only the instruction is.

    Args:
        instructions: a text file with one instruction per line.
        generic_instruction: the instruction used for the generic share;
            None (the default) is the UMM family's own ("Generate an
            image." spliced as the family's template does).
        generic_prob: share of samples that get the generic instruction.
    """

    def __init__(self, instructions=str(DEFAULT_POOL),
                 generic_instruction=None, generic_prob=0.1, **kwargs):
        super().__init__(**kwargs)
        self.instructions = load_instructions(instructions)
        self.generic_instruction = generic_instruction
        self.generic_prob = generic_prob

    def instruction(self, draw):
        rng = self.rng(draw)
        if rng.random() < self.generic_prob:
            return self.generic_instruction
        return rng.choice(self.instructions)

    def loss(self, umm, batch):
        # A feature cache (FeatureCache source) gives und_features and
        # gen_targets in place of the pixels.
        embeds = umm.encode_understanding(
            batch.get('und_pixels'), und_features=batch.get('und_features'))
        condition = umm.image_condition(
            embeds, [self.instruction(d) for d in batch['draw']])
        return umm.generation_loss(
            condition, batch.get('gen_pixels'),
            gen_targets=batch.get('gen_targets'),
            draws=self.generation_seeds(batch['draw']))
