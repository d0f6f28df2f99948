"""benchmarks/gpu_check.py where no GPU is: it says so and exits 0; its orchestration, table and the
helpers that also run on a CPU (random models, autocast training in fp32, the tokens/s measure)."""

import numpy as np
import pytest

gpu_check = pytest.importorskip("benchmarks.gpu_check")


def test_without_cuda_it_says_so_and_exits_0(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path / "out")]) == 0
    assert "no CUDA device" in capsys.readouterr().out
    assert not list(tmp_path.iterdir())  # nothing pretended, nothing written


def test_a_failed_check_makes_the_exit_code_1(tmp_path, capsys, monkeypatch):
    """main's table and exit code, with the GPU checks stood in for (this machine has no GPU)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Tesla T4")
    monkeypatch.setattr(gpu_check, "random_model", lambda kind, folder, size="small": folder)
    monkeypatch.setattr(gpu_check, "autocast_training", lambda f, p: (f"{p} fine", {}))
    monkeypatch.setattr(gpu_check, "quantised_lora", lambda f, b, w: (_ for _ in ()).throw(RuntimeError("no bnb")))
    monkeypatch.setattr(gpu_check, "per_device_scoring", lambda f, w: ("1 process", {}))
    monkeypatch.setattr(gpu_check, "throughput", lambda f, n: ("1 tokens/s", {"tokens_per_s": 1.0}))
    assert gpu_check.main(["--out", str(tmp_path / "gpu")]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] 4-bit bitsandbytes + LoRA" in out and "RuntimeError: no bnb" in out
    assert "[skipped] 2-process data parallel" in out  # the real check: 1 device
    md = (tmp_path / "gpu.md").read_text()
    assert "| DistilBERT-shaped fp16 autocast training | ok |" in md and "1 x Tesla T4" in md


def test_peak_lookup_prefers_the_longest_name():
    assert gpu_check.peak_tflops("Tesla T4") == 65.0
    assert gpu_check.peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert gpu_check.peak_tflops("NVIDIA A10G") == 125.0
    assert gpu_check.peak_tflops("NVIDIA H200") == 989.0
    assert gpu_check.peak_tflops("Some New Card") is None


def test_cpu_pieces_run(tmp_path):
    """The training check's code and the tokens/s measure on a CPU (fp32: CPU autocast is not what is checked)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    llama = gpu_check.random_model("llama", tmp_path / "llama", "tiny")
    detail, metrics = gpu_check.autocast_training(llama, "fp32")
    assert "3 steps" in detail and np.isfinite(metrics["loss"])
    distil = gpu_check.random_model("distilbert", tmp_path / "distil", "tiny")
    model = AutoModelForSequenceClassification.from_pretrained(str(distil), num_labels=3)
    m = gpu_check.measure_inference(model, np.array([40, 30, 20, 10]), 2, "cpu", torch.float32)
    assert m["tokens_per_s"] > 0 and m["flops_per_s"] == pytest.approx(2 * m["params"] * m["tokens_per_s"])
    detail, metrics = gpu_check.per_device_scoring(distil, tmp_path / "scoring", precision="fp32")
    assert detail.startswith("0 process(es)") and metrics["max_diff"] == 0.0  # no GPU: both score in this process
