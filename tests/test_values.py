"""adaptlab.values: one home for "is this an int / a number" (a bool is neither), shared by every stage."""
import math

import numpy as np
import pytest

from adaptlab.values import is_int, is_number


@pytest.mark.parametrize("value, expected", [(3, True), (np.int64(3), True), (-1, True), (True, False),
                                             (np.bool_(True), False), (3.0, False), ("3", False), (None, False)])
def test_is_int(value, expected):
    assert is_int(value) is expected


@pytest.mark.parametrize("value, finite, expected", [
    (0.5, True, True), (2, True, True), (np.float64(0.5), True, True), (False, True, False), ("1", True, False),
    (None, True, False), (math.nan, True, False), (math.inf, True, False), (math.inf, False, True),
    (math.nan, False, True), (True, False, False)])
def test_is_number(value, finite, expected):
    assert is_number(value, finite=finite) is expected


def test_the_modules_that_had_their_own_copy_use_the_shared_one():
    from adaptlab import studyfile
    from adaptlab.decide import evidence
    from adaptlab.report import build
    from adaptlab.ui import templating

    assert studyfile.is_int is is_int and studyfile.is_number is is_number
    assert evidence.is_number is is_number and build._is_num is is_number and templating.is_num is is_number


def test_the_rungs_use_the_shared_checks_and_keep_no_copy():
    from adaptlab.errors import ConfigError
    from adaptlab.rungs import lora, lpft, multitask, setfit, training, unfreeze
    from adaptlab.rungs.finetune import FinetuneConfig
    from adaptlab.rungs.lora import LoraConfig
    from adaptlab.rungs.setfit import SetFitConfig

    for mod in (training, setfit, multitask, lora, lpft, unfreeze):
        assert not hasattr(mod, "_is_num") and not hasattr(mod, "_is_int"), mod.__name__
        assert mod.is_int is is_int
    assert training.is_number is is_number and setfit.is_number is is_number and lora.is_number is is_number
    # A bool is no integer and NaN no number; numpy's integers are integers.
    assert FinetuneConfig(batch_size=np.int64(8)).batch_size == 8
    for bad in ({"checkpoint_every": True}, {"head_lr": math.nan}, {"max_epochs": 2.0}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            FinetuneConfig(**bad)
    with pytest.raises(ConfigError, match="alpha"):
        LoraConfig(alpha=math.inf)
    with pytest.raises(ConfigError, match="eval_points"):
        SetFitConfig(eval_points=False)
