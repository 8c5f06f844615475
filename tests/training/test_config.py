"""Training configuration: presets, YAML round trip, unknown keys, ``--set`` overrides, validate()."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from training.config import (
    TASKS,
    ConfigError,
    TrainConfig,
    apply_overrides,
    available_presets,
    from_dict,
    load_yaml,
    preset,
    resolve_config,
    save_yaml,
    to_dict,
)


def test_defaults_are_the_method_values():
    config = TrainConfig()
    assert (config.optim.lr_stage1, config.optim.lr_stage2) == (0.1, 0.01)
    assert (config.optim.momentum, config.optim.weight_decay, config.optim.nesterov) == (0.9, 1e-4, False)
    assert (config.optim.batch_source, config.optim.batch_target, config.optim.drop_last) == (128, 128, True)
    weights = config.loss
    assert (weights.supervised, weights.reconstruction, weights.contrastive, weights.ocm, weights.ccm) \
        == (1, 20, 1, 5, 10)
    assert (config.constants.ema_momentum, config.constants.temperature, config.constants.sinkhorn_xi) \
        == (0.999, 0.07, 10)
    assert (config.constants.sinkhorn_iters, config.constants.sinkhorn_tol) == (100, 1e-2)
    assert config.decisions.kmeans_init and config.decisions.bank_init and config.decisions.ccm_rho is None


@pytest.mark.parametrize("name", available_presets())
def test_every_preset_round_trips_through_yaml(name, tmp_path):
    config = preset(name)
    path = save_yaml(config, tmp_path / "config.yaml")
    assert from_dict(load_yaml(path)) == config
    assert to_dict(from_dict(to_dict(config))) == to_dict(config)


def test_every_task_has_a_preset():
    assert set(TASKS) <= set(available_presets())
    assert preset("ntu2pku").data.task == "ntu2pku"


def test_config_is_frozen():
    config = TrainConfig()
    with pytest.raises(ValidationError, match="frozen"):
        config.optim.lr_stage1 = 1.0


def test_unknown_key_in_a_file_names_the_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  lr_stage1: 0.05\n  learning_rate: 0.1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"optim\.learning_rate: unknown key"):
        resolve_config(config_file=path)


def test_unknown_top_level_section_names_the_key():
    with pytest.raises(ConfigError, match=r"optimiser: unknown key"):
        from_dict({"optimiser": {"lr_stage1": 0.1}})


def test_bad_value_names_the_key():
    with pytest.raises(ConfigError, match=r"loss\.ccm"):
        from_dict({"loss": {"ccm": -1}})


def test_cli_override_sets_any_field_and_parses_types():
    config = resolve_config(task="ucla2msr", overrides=[
        "optim.lr_stage1=0.05", "optim.epochs_stage2=3", "augment.mask_source=true",
        "decisions.ccm_rho=7", "ablation.components=bm+ocm+ccm", "seed=4", "model.num_clusters=null"])
    assert config.optim.lr_stage1 == 0.05 and config.optim.epochs_stage2 == 3
    assert config.augment.mask_source is True and config.decisions.ccm_rho == 7.0
    assert config.seed == 4 and config.model.num_clusters is None


def test_override_beats_file_beats_preset(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"optim": {"epochs_stage1": 7, "lr_stage2": 0.02}}), encoding="utf-8")
    config = resolve_config(task="ucla2msr-paper-cpu", config_file=path, overrides=["optim.epochs_stage1=2"])
    assert config.optim.epochs_stage1 == 2  # override
    assert config.optim.lr_stage2 == 0.02  # file
    assert config.optim.batch_target == preset("ucla2msr-paper-cpu").optim.batch_target  # preset


@pytest.mark.parametrize("override, match", [
    ("optim.lr=0.05", r"unknown key 'optim\.lr'"),
    ("optim", r"expected KEY=VALUE"),
    ("seed.value=1", r"'seed' is not a section"),
    ("optim.lr_stage1=[", r"cannot parse"),
    ("optim.lr_stage1=fast", r"optim\.lr_stage1"),
])
def test_bad_overrides_are_named(override, match):
    with pytest.raises(ConfigError, match=match):
        resolve_config(task="ucla2msr", overrides=[override])


def test_validate_cross_field_rules():
    with pytest.raises(ConfigError, match="epochs_stage1 \\+ optim.epochs_stage2"):
        from_dict({"optim": {"epochs_stage1": 0, "epochs_stage2": 0}})
    with pytest.raises(ConfigError, match="ccm_rho"):
        from_dict({"decisions": {"ccm_rho": 7}, "ablation": {"components": "bm+ocm"}})
    with pytest.raises(ConfigError, match="needs loss.ocm"):
        from_dict({"loss": {"ocm": 0}})
    with pytest.raises(ConfigError, match="not a built-in task"):
        from_dict({"data": {"task": "mine"}})
    assert from_dict({"data": {"task": "mine", "prepared_dir": "somewhere"}}).data.task == "mine"


def test_ablation_rows():
    bm = from_dict({"ablation": {"components": "bm"}})
    assert not bm.uses_ocm and not bm.uses_ccm
    ocm = from_dict({"ablation": {"components": "bm+ocm"}})
    assert ocm.uses_ocm and not ocm.uses_ccm
    no_decoder = from_dict({"ablation": {"shared_decoder": False}})
    assert no_decoder.reconstruction_weight == 0.0 and TrainConfig().reconstruction_weight == 20.0


def test_stage_of_epoch():
    config = from_dict({"optim": {"epochs_stage1": 2, "epochs_stage2": 3}})
    assert [config.stage_of(e) for e in range(1, 6)] == [1, 1, 2, 2, 2]
    assert config.total_epochs == 5 and config.lr(1) == 0.1 and config.lr(2) == 0.01


def test_apply_overrides_does_not_mutate_input():
    values = {"optim": {"lr_stage1": 0.1}}
    out = apply_overrides(values, ["optim.lr_stage1=0.2"])
    assert values["optim"]["lr_stage1"] == 0.1 and out["optim"]["lr_stage1"] == 0.2


def test_unknown_preset_lists_the_available_ones():
    with pytest.raises(ConfigError, match="ucla2msr"):
        preset("nope")


def test_a_users_task_file_names_the_task(tmp_path):
    named = tmp_path / "walks.yaml"
    named.write_text("name: my-walks\nsource: {path: a}\ntarget: {path: b}\n", encoding="utf-8")
    config = resolve_config(task=str(named))
    assert config.data.task == "my-walks" and config.data.task_file == str(named.resolve())
    unnamed = tmp_path / "runs_only.yml"
    unnamed.write_text("source: {path: a}\ntarget: {path: b}\n", encoding="utf-8")
    assert resolve_config(task=str(unnamed)).data.task == "runs_only"
