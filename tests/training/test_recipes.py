"""``--recipe cpu`` (training/recipes.py): sized from the data, yielding to ``--set``, and turning
on exactly the label-free steps of ``training.labelfree``."""

from __future__ import annotations

import math

import pytest
import torch

from training.config import ConfigError, from_dict, resolve_config
from training.engine import stalled_warning
from training.recipes import cpu_recipe

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("n_target, batch, epochs_1", [(557, 32, 30), (199, 32, 85), (60, 14, 128),
                                                       (50_000, 32, 1)])
def test_cpu_recipe_is_sized_from_the_data(n_target, batch, epochs_1):
    values = cpu_recipe(n_target, 1484, threads=2)
    optim = values["optim"]
    assert optim["batch_target"] == batch and optim["batch_source"] == batch
    assert optim["batch_target"] <= max(8, n_target // 4)
    assert optim["epochs_stage1"] == epochs_1
    steps = (optim["epochs_stage1"] + optim["epochs_stage2"]) * (n_target // batch)
    horizon = 1.0 / (1.0 - values["constants"]["ema_momentum"])
    assert horizon == pytest.approx(max(10.0, 0.12 * steps), rel=1e-3)
    assert values["eval"]["every"] > optim["epochs_stage1"] + optim["epochs_stage2"]
    config = resolve_config(task="ucla2msr", recipe=values)
    assert config.labelfree.anchors and config.model.dropout == 0.0


def test_cpu_recipe_yields_to_set_overrides_and_refuses_tiny_sets():
    config = resolve_config(task="ucla2msr", recipe=cpu_recipe(557, 1484),
                            overrides=["optim.batch_target=16", "labelfree.anchors=false",
                                       "loss.anchor=0"])
    assert config.optim.batch_target == 16 and not config.labelfree.anchors
    with pytest.raises(ConfigError, match="at least 4 target"):
        cpu_recipe(3, 100)


def test_the_anchor_loss_needs_the_anchors():
    with pytest.raises(ConfigError, match="labelfree.anchors"):
        from_dict({"loss": {"anchor": 1.0}})


def test_cpu_recipe_turns_on_every_label_free_step_and_the_paper_presets_none():
    recipe = from_dict(cpu_recipe(557, 1484)).labelfree
    assert recipe.anchors and recipe.recalibrate_bn and recipe.refit and recipe.refit_steps == 3000
    for preset in ("ucla2msr", "ntu2pku", "ucla2msr-paper-cpu"):
        paper = resolve_config(task=preset).labelfree
        assert not (paper.anchors or paper.recalibrate_bn or paper.refit), preset


def test_retired_switches_are_refused_by_name():
    for retired in ("anchors.mode=spectral", "neighbours.k=3", "decisions.refit_consensus=true",
                    "model.motion_input=true", "optim.schedule=cosine"):
        with pytest.raises(ConfigError, match="unknown key"):
            resolve_config(task="ucla2msr", overrides=[retired])


def test_stalled_stage_1_is_reported_from_the_source_loss_alone():
    """The recipe's former anchor weight 5 left the source cross-entropy at ln 10 (2.31 at epoch 10)."""
    message = stalled_warning(2.31, 10, 30)
    assert message is not None and "ln(10) = 2.303" in message and "epoch 30" in message
    assert stalled_warning(1.28, 10, 30) is None  # what anchor weight 1 reached
    assert stalled_warning(0.95 * math.log(10) - 1e-6, 10, 30) is None
    assert stalled_warning(0.9, 1, 30) is None  # one source class: no chance level to compare


def test_cpu_recipe_keeps_the_loss_weights_that_learn():
    assert cpu_recipe(557, 1484)["loss"] == {"anchor": 1.0, "ocm": 1.0, "ccm": 1.0}


def test_cpu_recipe_uses_bf16_only_where_it_is_native(monkeypatch):
    import training.recipes as recipes

    assert cpu_recipe(557, 1484, bf16=False)["runtime"]["amp"] is False
    assert cpu_recipe(557, 1484, bf16=True)["runtime"]["amp"] is True
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    # the default follows the CPU's bf16 instructions (AMX tiles or AVX-512 BF16); plain AVX-512,
    # where oneDNN emulates bf16 and calls it supported, stays in fp32
    for amx, avx512_bf16, native in ((False, False, False), (True, False, True),
                                     (False, True, True), (True, True, True)):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v,
                            raising=False)
        monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True,
                            raising=False)
        assert recipes.fast_bf16() is native
        assert cpu_recipe(557, 1484)["runtime"]["amp"] is native
