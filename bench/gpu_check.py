"""The GPU check: mixed precision + channels_last against fp32 fine-tuning, and two lessons in
smoke mode, on a CUDA GPU. Writes docs/benchmarks_gpu.md with the card's name.

    python bench/gpu_check.py              # on a machine with a CUDA GPU (a few minutes)
    python bench/gpu_check.py --dry-run    # the same code on the CPU at toy sizes, to check the script

Each fine-tuning contender trains EfficientNet-Lite0 (every layer trainable) for one epoch on
in-memory images, so the figure is the GPU's and not the JPEG decoder's; the contenders
alternate, one warm-up epoch each first, and the report gives the median of the timed epochs
and the peak GPU memory that PyTorch allocated.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import xferlib as xl  # noqa: E402

CONTENDERS = {  # name: (amp, channels_last)
    "fp32, contiguous": (False, False),
    "fp32, channels_last": (False, True),
    "mixed precision, contiguous": (True, False),
    "mixed precision + channels_last": (True, True),
}
NOTEBOOKS = ["02_feature_extraction", "03_fine_tuning"]


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def fine_tuning(device, images: int, size: int, batch: int, repeats: int) -> dict:
    g = torch.Generator().manual_seed(0)
    mean, std = torch.tensor(xl.get_spec("efficientnet_lite0").mean), torch.tensor(xl.get_spec("efficientnet_lite0").std)
    x = (torch.rand(images, 3, size, size, generator=g) - mean.view(3, 1, 1)) / std.view(3, 1, 1)
    data = TensorDataset(x, torch.arange(images) % 10)
    seconds = {name: [] for name in CONTENDERS}
    peak = {}
    for r in range(repeats + 1):  # round 0 warms up (cuDNN autotuning, allocator)
        for name, (amp, channels_last) in CONTENDERS.items():
            xl.seed_everything(r)
            model = xl.build_classifier(xl.load_backbone("efficientnet_lite0", image_size=size), 10)
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            _sync(device)
            start = time.perf_counter()
            xl.fit(model, data, epochs=1, batch_size=batch, device=device, amp=amp, channels_last=channels_last, progress=False)
            _sync(device)
            if r:
                seconds[name].append(time.perf_counter() - start)
            if device.type == "cuda":
                peak[name] = torch.cuda.max_memory_allocated() / 2**20
            del model
    rate = {name: images / statistics.median(s) for name, s in seconds.items()}
    return {"rate": rate, "peak_mib": peak, "images": images, "size": size, "batch": batch}


def notebooks(device) -> list[dict]:
    out = ROOT / "build" / "gpu_check.json"
    env = {**os.environ, "XFERLIB_DEVICE": device.type}
    subprocess.run([sys.executable, str(ROOT / "bench" / "run_notebooks.py"), "--smoke", "--json", str(out), *NOTEBOOKS],
                   env=env, check=False)
    return json.loads(out.read_text()) if out.exists() else []


def report(device, ft: dict, nbs: list[dict] | None, repeats: int) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (dry run: toy sizes, not a GPU figure)"
    base = ft["rate"]["fp32, contiguous"]
    lines = ["# GPU check", "", f"Device: **{name}**; PyTorch {torch.__version__}, CUDA {torch.version.cuda}.", "",
             "## Fine-tuning throughput: mixed precision and channels_last against fp32", "",
             f"EfficientNet-Lite0, every layer trainable, {ft['images']} in-memory images at {ft['size']} px, batch "
             f"{ft['batch']}; median of {repeats} epochs per contender after a warm-up epoch, contenders alternating.", "",
             "| contender | images/s | vs fp32 | peak GPU MiB |", "| --- | ---: | ---: | ---: |"]
    for k, v in ft["rate"].items():
        mib = f"{ft['peak_mib'][k]:.0f}" if k in ft["peak_mib"] else "-"
        lines.append(f"| {k} | {v:.1f} | {v / base:.2f}x | {mib} |")
    if nbs is not None:
        lines += ["", f"## Two lessons in smoke mode on the {device.type.upper()}", "",
                  "| notebook | seconds | kernel peak MiB (host) | result |", "| --- | ---: | ---: | --- |"]
        lines += [f"| {r['notebook']} | {r['seconds']:.1f} | {r['peak_mib'] or 0:.0f} | {r['error'] or 'pass'} |" for r in nbs]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="run on the CPU at toy sizes (checks the script, measures nothing)")
    parser.add_argument("--no-notebooks", action="store_true", help="skip the smoke runs of two lessons")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, help="default: docs/benchmarks_gpu.md (build/gpu_check_dry_run.md with --dry-run)")
    args = parser.parse_args(argv)
    if args.dry_run:
        device, sizes = torch.device("cpu"), dict(images=16, size=64, batch=8)
    elif torch.cuda.is_available():
        device, sizes = torch.device("cuda"), dict(images=1024, size=224, batch=64)
    else:
        print("no CUDA GPU here: run this on a GPU machine, or use --dry-run to check the script on the CPU")
        return 2
    out = args.out or (ROOT / ("build/gpu_check_dry_run.md" if args.dry_run else "docs/benchmarks_gpu.md"))
    ft = fine_tuning(device, repeats=args.repeats, **sizes)
    nbs = None if args.no_notebooks else notebooks(device)
    text = report(device, ft, nbs, args.repeats)
    xl.storage.write_atomic(out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
