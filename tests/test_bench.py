"""The benchmark scripts run: the GPU check on the CPU at toy sizes (its code path, not its figures)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
GPU_CHECK = REPO / "bench" / "gpu_check.py"


@pytest.mark.slow
def test_gpu_check_dry_run_writes_its_report(tmp_path):
    out = tmp_path / "gpu.md"
    proc = subprocess.run([sys.executable, str(GPU_CHECK), "--dry-run", "--no-notebooks", "--repeats", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = out.read_text()
    assert "dry run" in text and "not a GPU figure" in text
    rows = [line for line in text.splitlines() if line.startswith("| fp32") or line.startswith("| mixed")]
    assert len(rows) == 4 and "| 1.00x |" in rows[0]
    assert all(float(r.split("|")[2]) > 0 for r in rows), rows


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_gpu_check_without_a_gpu_says_so_and_writes_nothing(tmp_path):
    out = tmp_path / "gpu.md"
    proc = subprocess.run([sys.executable, str(GPU_CHECK), "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no CUDA GPU here" in proc.stdout and not out.exists()


@pytest.mark.slow
def test_cache_key_bench_writes_its_figures(tmp_path):
    out = tmp_path / "cache.md"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "cache_key.py"), "--n", "12", "--big", "3", "--repeats", "1",
                           "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in out.read_text().splitlines() if line.startswith("| key by") or line.startswith("| feature")]
    assert len(rows) == 3 and all(float(r.split("|")[2]) > 0 for r in rows), rows
    assert "faster to index" in out.read_text()


@pytest.mark.slow
def test_peft_bench_quick_run_writes_its_tables(tmp_path):
    out = tmp_path / "peft.md"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "peft_methods.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = out.read_text()
    assert "A quick run" in text and "Figures are medians on a shared" in text
    for model in ("EfficientNet-Lite0", "all-MiniLM-L6-v2"):
        section = text.split(f"## {model}:", 1)[1].split("\n## ", 1)[0]
        rows = {r.split("|")[1].strip(): [c.strip() for c in r.split("|")[2:-1]] for r in section.splitlines()
                if r.startswith("| LoRA r=8 |") or r.startswith("| full fine-tuning |")}
        lora, full = rows["LoRA r=8"], rows["full fine-tuning"]
        assert full[1] == "100.0%" and full[5] == "1.00x", full
        assert float(lora[1].rstrip("%")) < 20 and float(lora[3].rstrip("%")) < 20, lora  # trainable and stored
        assert all(cell.endswith("MiB") for cell in lora[7:] + full[7:]), (lora, full)  # memory was probed
        assert "LoRA r=8, merged" in section
    assert "What the numbers show" in text and "conv_pw" in text


@pytest.mark.slow
def test_ddp_bench_quick_run_compares_one_and_two_processes(tmp_path):
    """bench/ddp.py at toy sizes: one process, then two under torchrun; the report has both workloads,
    positive timings, and the head's weights agreeing between one and two processes."""
    import re

    out = tmp_path / "ddp.md"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "ddp.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = out.read_text()
    assert text.startswith("## 1 vs 2 processes (one thread each) on this machine")
    rows = {r.split("|")[1].strip(): [c.strip() for c in r.split("|")[2:-1]] for r in text.splitlines()
            if r.startswith("| full fine-tuning |") or r.startswith("| head on cached features |")}
    assert set(rows) == {"full fine-tuning", "head on cached features"}
    for cells in rows.values():
        assert all(float(c) > 0 for c in (cells[1], cells[2], cells[4])) and cells[3].endswith("x"), cells
    assert rows["full fine-tuning"][0] == "3,383,818" and rows["head on cached features"][0] == "12,810"
    head = float(re.search(r"head on cached features ([0-9.e+-]+)\.", text).group(1))
    assert head < 1e-4, "a linear head trains alike on one and on two processes"
