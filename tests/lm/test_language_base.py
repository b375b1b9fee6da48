"""What every language method shares (methods/_language.py): argument checks made before any work, LoRA, masks."""
from __future__ import annotations

import pytest

pytest.importorskip("peft")

import expunge  # noqa: E402

from tests.lm_helpers import tiny_qa_task  # noqa: E402


@pytest.mark.parametrize("lora, message", [
    ({"merge": "no"}, "lora merge='no' is not allowed; expected true or false"),
    ({"target_modules": "q_proj"}, "lora target_modules='q_proj' is not allowed"),
    ({"r": 0}, "lora r=0 is not allowed"),
    ({"alpha": -1}, "lora alpha=-1 is not allowed"),
    ({"dropout": 1.0}, "lora dropout=1.0 is not allowed"),
    ({"rank": 8}, "lora has unknown key"),
])
def test_bad_lora_settings_are_refused_when_the_method_is_built(lora, message):
    with pytest.raises(ValueError, match=message):
        from expunge.methods import registered

        registered()["grad_ascent"](lora=lora)


def test_wagle_mask_needs_retain_data_up_front():
    """A forget-only method with mask='wagle' reads the retain loss: a request without retain is refused before
    any copy of the model is made."""
    task = tiny_qa_task()
    with pytest.raises(ValueError, match="needs retain data"):
        expunge.unlearn(task.original, forget=task.forget, retain=None, method="grad_ascent", mask="wagle")


def test_a_model_with_adapters_is_not_saved_half(tmp_path):
    task = tiny_qa_task()
    kept = expunge.unlearn(task.original, forget=task.forget, retain=task.retain, method="grad_ascent", epochs=1,
                           lora={"r": 2, "merge": False})
    with pytest.raises(ValueError, match="carries LoRA adapters; merge them first"):
        kept.save_pretrained(tmp_path / "m")
    assert not (tmp_path / "m").exists()
