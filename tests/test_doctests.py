"""The examples in docstrings run."""
from __future__ import annotations

import doctest

import pytest

import expunge
import expunge.data.forget
import expunge.metrics.verification


@pytest.mark.parametrize("module", [expunge, expunge.data.forget, expunge.metrics.verification])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
