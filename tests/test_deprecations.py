"""No call into transformers, diffusers or MMEngine that they have marked
for removal: a routine upgrade within setup.cfg's bounds must not break
training or sampling (transformers 5.24 marks ``past_key_values=``, which
the Janus sampler used, for removal in 5.40)."""
import re
import warnings

import pytest
import torch

from test_umm_conformance import FAMILIES, IDS, batch, build

REMOVAL = re.compile(r'remov(ed|al)|will be deleted|no longer supported',
                     re.IGNORECASE)
# Removal warnings point at their caller (stacklevel): our code calling the
# libraries, or the libraries calling each other.
WHERE = ('/reca_toolkit/', '/projects/', '/tests/', '/transformers/',
         '/diffusers/', '/mmengine/')


def removal_warnings(record):
    return [f'{w.filename}:{w.lineno}: {w.message}' for w in record
            if issubclass(w.category, (DeprecationWarning, FutureWarning))
            and REMOVAL.search(str(w.message))
            and any(place in w.filename for place in WHERE)]


@pytest.mark.parametrize('family', FAMILIES, ids=IDS)
def test_training_and_sampling_use_no_api_marked_for_removal(family):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter('always')
        model = build(family, gradient_checkpointing=True)
        losses = model.loss(batch(family))
        sum(v for k, v in losses.items() if k.startswith('loss')).backward()
        model.eval()
        with torch.no_grad():
            model.generate(['a red circle'], seed=0)
    assert not removal_warnings(record)


def test_the_filter_sees_a_removal_warning():
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter('always')
        from transformers.utils.deprecation import deprecate_kwarg

        @deprecate_kwarg('old', '99.0.0', new_name='new')
        def call(new=None):
            return new

        call(old=1)
    assert removal_warnings(record)
