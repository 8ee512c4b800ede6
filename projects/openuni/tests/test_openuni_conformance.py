"""The UMM conformance suite (tests/test_umm_conformance.py), unchanged,
for OpenUni: its tests run here with the OpenUni ``Family`` case."""
import sys
from pathlib import Path

import pytest

_TESTS = str(Path(__file__).resolve().parents[3] / 'tests')
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from conftest import no_network, registered  # noqa: E402,F401
from test_umm_conformance import *  # noqa: E402,F401,F403
from test_umm_conformance import Family  # noqa: E402

import projects.openuni.openuni  # noqa: E402,F401  registers OpenUniUMM

OPENUNI = Family(
    'openuni', 'projects/openuni/configs/_base_/openuni_tiny.py', 32,
    ('vision', 'llm', 'lm_head', 'vae'),
    # Velocity MSE at init: noise (var 1) plus the random DC-AE's latents
    # (unscaled in the tiny config) plus SANA's output; text over 1024.
    (1.0, 20.0), (6.3, 7.6))


@pytest.fixture(scope='module')
def family():
    return OPENUNI
