"""An 8-bit run's log stays readable: bitsandbytes reports every int8 matmul's input cast (58,000
lines in three steps on the H100); the trainer drops exactly that notice and nothing else."""

from __future__ import annotations

import logging
import warnings

import pytest
from wft_trainer.engines.transformers_engine import _quiet_int8_cast_notice

NOTICE = "MatMul8bitLt: inputs will be cast from torch.float32 to float16 during quantization"


def test_the_cast_notice_is_dropped_and_other_warnings_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    _quiet_int8_cast_notice()
    _quiet_int8_cast_notice()  # loading twice adds no second filter
    bnb = logging.getLogger("bitsandbytes.autograd._functions")
    assert len(bnb.filters) == 1
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            bnb.warning(NOTICE)
        bnb.warning("some other bitsandbytes warning")
    assert [r.getMessage() for r in caplog.records] == ["some other bitsandbytes warning"]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        _quiet_int8_cast_notice()  # older releases warn instead of logging
        warnings.warn(NOTICE, UserWarning, stacklevel=1)
    assert seen == []
