"""benchmarks/gpu_check.py on the CPU: arguments, install commands, the provider fallback
message, the epoch budget, the training command, reading a run, the summary, and a whole run
that skips every GPU section with its reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import load_benchmark_script

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gpu_check():
    return load_benchmark_script("gpu_check")


def test_arguments_and_their_limits(gpu_check, tmp_path):
    args = gpu_check.parse_args(["--json", str(tmp_path / "r.json")])
    assert (args.budget_s, args.model, args.task, args.skip_install) == (480.0, "ucla2msr",
                                                                         "ucla2msr", False)
    with pytest.raises(SystemExit):
        gpu_check.parse_args(["--budget-s", "10"])


def test_install_uses_the_project_extras_and_replaces_cpu_onnxruntime(gpu_check, tmp_path):
    plain = gpu_check.install_commands(None, cpu_onnxruntime_installed=False)
    assert len(plain) == 1 and plain[0][-1].endswith("[gpu,train]") and "-e" in plain[0]
    offline = gpu_check.install_commands(tmp_path, cpu_onnxruntime_installed=True)
    assert offline[0][-3:] == ["uninstall", "-y", "onnxruntime"]
    assert ["--no-index", "--find-links", str(tmp_path)] == offline[1][5:8]


def test_provider_fallback_messages(gpu_check):
    cuda, cpu = gpu_check.CUDA, gpu_check.CPU
    assert "is not available" in gpu_check.fallback_message([cpu])
    assert "pending" in gpu_check.fallback_message([cpu])
    assert "fell back to the CPU" in gpu_check.fallback_message([cuda, cpu], [cpu])
    assert gpu_check.fallback_message([cuda, cpu], [cuda, cpu]) is None
    assert gpu_check.fallback_message([cuda, cpu]) is None


def test_epochs_fill_what_is_left_of_the_budget(gpu_check):
    # probe: 40 s in all, 5 s per epoch -> 30 s fixed; 330 s left -> 60 epochs, 40 + 20
    assert gpu_check.epochs_that_fit(330.0, 40.0, 5.0) == (40, 20)
    assert gpu_check.epochs_that_fit(10.0, 40.0, 5.0) == (1, 1)  # never fewer than 1 + 1


def test_training_command_sets_valid_keys(gpu_check, tmp_path):
    from training.config import TrainConfig, apply_overrides, from_dict, to_dict

    command = gpu_check.train_command("ucla2msr", tmp_path / "run", (3, 2))
    assert command[1:5] == ["-m", "training.run", "--task", "ucla2msr"]
    sets = [command[i + 1] for i, arg in enumerate(command) if arg == "--set"]
    config = from_dict(apply_overrides(to_dict(TrainConfig()), sets))
    assert (config.runtime.device, config.runtime.amp) == ("cuda", True)
    assert (config.optim.batch_source, config.optim.batch_target) == (128, 128)
    assert (config.optim.epochs_stage1, config.optim.epochs_stage2) == (3, 2)
    launcher = ["python", "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    assert gpu_check.train_command("t", tmp_path, (1, 1), launcher)[:5] == launcher


def test_read_run_and_the_summary(gpu_check, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    records = [{"epoch": e, "steps": 4, "step_s": s, "time_s": 4 * s}
               for e, s in ((1, 0.2), (2, 0.1), (3, 0.3))]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (run / "summary.json").write_text(json.dumps({"b1/acc": 0.4, "b1/nmi": 0.5, "note": "x"}))
    read = gpu_check.read_run(run)
    assert (read["epochs"], read["steps"], read["median_step_s"]) == (3, 12, 0.2)
    assert read["final_metrics"] == {"b1/acc": 0.4, "b1/nmi": 0.5}
    results = {"machine": {"gpus": 1, "gpu_names": ["GPU X"]}, "wall_s": 400.0, "budget_s": 480.0,
               "install": {"status": "ok"},
               "onnxruntime_cuda": {"status": "ok", "providers_used": ["CUDAExecutionProvider"],
                                    "parity": {"samples": 557, "max_abs_probabilities": 1e-6,
                                               "argmax_agreement": 1.0},
                                    "seq_per_s": {"128": 9000.0, "1024": 20000.0},
                                    "latency_b1_ms": 0.8},
               "training_cuda": {"status": "ok", "wall_s": 300.0, **read},
               "ddp": {"status": "skipped", "message": "1 GPU(s) on this machine"}}
    text = gpu_check.summary(results)
    assert "providers used CUDAExecutionProvider" in text and "b=1024 20000 seq/s" in text
    assert "3 epochs, 12 steps, median step 0.200 s" in text and "b1/acc 0.400" in text
    assert "- ddp: skipped: 1 GPU(s) on this machine" in text


def test_a_run_without_cuda_skips_each_gpu_section_with_its_reason(gpu_check, tmp_path, capsys):
    ort_cuda, torch_cuda = gpu_check.cuda_ready()
    if ort_cuda or torch_cuda:
        pytest.skip("this machine has CUDA")
    out = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--skip-install", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert [results[k]["status"] for k in ("install", "onnxruntime_cuda", "training_cuda",
                                           "ddp")] == ["skipped"] * 4
    printed = capsys.readouterr().out
    assert "CUDAExecutionProvider is not available" in printed
    assert "torch sees no CUDA device" in printed and "needs two" in printed
