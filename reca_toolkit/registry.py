"""Every registry of reca_toolkit: the index of what a config can build.

Each registry is a child of the MMEngine root of the same name, so that with
``default_scope='reca_toolkit'`` the Runner finds our components by their
plain names, and ``locations`` imports the defining package lazily on first
use.

Module registries. MMEngine allows one child of ``MODELS`` per scope, so the
encoder, generator, UMM and objective (loss) registries the design names are
*aliases* of ``MODELS``: one namespace for every ``nn.Module``, as in
mmdetection and mmagic. The aliases say at the registration site what a class
is; ``MODELS.build`` builds any of them.

Non-module factories live in root registries of their own: tokenizers
(``TOKENIZERS``), and benchmark scorers (``SCORERS``: detectors, colour
classifiers, VQA models, LLM judges, feature networks, external scorer
commands), which metrics build lazily, on first use, because they often need
packages or weights that exist only on users' machines.

Collate functions: MMEngine's Runner looks collate functions up in the *root*
``FUNCTIONS`` registry without the default scope, so configs name ours with
the scope prefix: ``collate_fn=dict(type='reca_toolkit.collate_by_source')``.
"""
import difflib

from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import EVALUATOR as MMENGINE_EVALUATOR
from mmengine.registry import FUNCTIONS as MMENGINE_FUNCTIONS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOG_PROCESSORS as MMENGINE_LOG_PROCESSORS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import RUNNERS as MMENGINE_RUNNERS
from mmengine.registry import STRATEGIES as MMENGINE_STRATEGIES
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISBACKENDS as MMENGINE_VISBACKENDS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import Registry


class SuggestingRegistry(Registry):
    """A registry whose failed lookups name the closest valid entries.

    MMEngine's own error only says a name is missing; a researcher with a
    typo in a config wants to see what they meant.
    """

    def get(self, key):
        obj = super().get(key)
        if obj is None and isinstance(key, str) and '.' not in key:
            raise KeyError(self.unknown_type_message(key))
        return obj

    def valid_names(self):
        names, registry = set(), self
        while registry is not None:
            names.update(registry.module_dict)
            registry = registry.parent
        return sorted(names)

    def unknown_type_message(self, key):
        names = self.valid_names()
        close = difflib.get_close_matches(key, names, n=5, cutoff=0.5)
        hint = (f'Did you mean: {", ".join(close)}?' if close else
                f'Valid names: {", ".join(names[:40])}'
                f'{" ..." if len(names) > 40 else ""}')
        return (f"type='{key}' is not registered in the {self.scope}::"
                f'{self.name} registry. {hint}')


def _child(name, parent, locations):
    return SuggestingRegistry(
        name, parent=parent, scope='reca_toolkit', locations=locations)


# Models: the RecA model, UMM adapters, encoders, generators, objectives.
MODELS = _child('model', MMENGINE_MODELS, ['reca_toolkit.models'])
UMMS = MODELS
ENCODERS = MODELS
GENERATORS = MODELS
OBJECTIVES = MODELS
LOSSES = MODELS
MODEL_WRAPPERS = _child('model_wrapper', MMENGINE_MODEL_WRAPPERS,
                        ['reca_toolkit.engine'])

# Tokenizers are built from local folders or in code; not nn.Modules.
TOKENIZERS = SuggestingRegistry(
    'tokenizer', scope='reca_toolkit', locations=['reca_toolkit.models'])

# Data.
DATASETS = _child('dataset', MMENGINE_DATASETS, ['reca_toolkit.datasets'])
DATA_SAMPLERS = _child('data sampler', MMENGINE_DATA_SAMPLERS,
                       ['reca_toolkit.datasets'])
TRANSFORMS = _child('transform', MMENGINE_TRANSFORMS,
                    ['reca_toolkit.datasets'])
FUNCTIONS = _child('function', MMENGINE_FUNCTIONS, ['reca_toolkit.datasets'])

# Engine.
HOOKS = _child('hook', MMENGINE_HOOKS, ['reca_toolkit.engine'])
LOOPS = _child('loop', MMENGINE_LOOPS, ['reca_toolkit.engine'])
OPTIMIZERS = _child('optimizer', MMENGINE_OPTIMIZERS, ['reca_toolkit.engine'])
OPTIM_WRAPPERS = _child('optim_wrapper', MMENGINE_OPTIM_WRAPPERS,
                        ['reca_toolkit.engine'])
OPTIM_WRAPPER_CONSTRUCTORS = _child('optimizer wrapper constructor',
                                    MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
                                    ['reca_toolkit.engine'])
PARAM_SCHEDULERS = _child('parameter scheduler', MMENGINE_PARAM_SCHEDULERS,
                          ['reca_toolkit.engine'])
RUNNERS = _child('runner', MMENGINE_RUNNERS, ['reca_toolkit.engine'])
STRATEGIES = _child('strategy', MMENGINE_STRATEGIES, ['reca_toolkit.engine'])
LOG_PROCESSORS = _child('log_processor', MMENGINE_LOG_PROCESSORS,
                        ['reca_toolkit.engine'])

# Evaluation and visualisation.
METRICS = _child('metric', MMENGINE_METRICS, ['reca_toolkit.evaluation'])
EVALUATOR = _child('evaluator', MMENGINE_EVALUATOR,
                   ['reca_toolkit.evaluation'])
SCORERS = SuggestingRegistry('scorer', scope='reca_toolkit',
                             locations=['reca_toolkit.evaluation'])
VISUALIZERS = _child('visualizer', MMENGINE_VISUALIZERS,
                     ['reca_toolkit.visualization'])
VISBACKENDS = _child('vis_backend', MMENGINE_VISBACKENDS,
                     ['reca_toolkit.visualization'])
