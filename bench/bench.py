"""Benchmarks of xferlib against the cheatsheet's recipes, written to docs/benchmarks.md.

    python bench/bench.py                 # everything (several minutes on a 2-core CPU)
    python bench/bench.py --only 1 2      # some benchmarks
    python bench/bench.py --repeats 5     # more runs per contender (default 3)

Every figure is the median of several runs, the contenders alternating within one process,
so that both see the same machine state. The course-wide timings (benchmark 4) come from
bench/run_notebooks.py, run in separate processes, one notebook at a time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import xferlib as xl  # noqa: E402

IMAGE_SIZE = 128
DOCS = ROOT / "docs"


def median(xs):
    return statistics.median(xs)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    r = xl.environment_report()
    return (f"{cpu}, {r['cpu_count']} cores, torch threads {r['torch_threads']}, {r['memory_gib']} GiB; "
            f"Python {r['python']}, torch {r['torch']}, torchvision {r['torchvision']}; device {r['device']}"
            + (f" ({r['gpu']})" if r["gpu"] else ""))


def data(n_per_class: int, split: str, backbone):
    return xl.data.photo_patches(split, n_per_class=n_per_class, size=64, seed=0).with_transform(backbone.transform)


# ---------------------------------------------------------------- the cheatsheet's recipes
def cheatsheet_feature_extraction(train, test, num_classes, epochs=10):
    """The cheatsheet's recipe: frozen parameters, model left in train mode, the backbone
    run on every batch of every epoch, batch size 4, Adam at 1e-3 on the new head."""
    backbone = xl.load_backbone("efficientnet_lite0", image_size=IMAGE_SIZE)
    model = xl.build_classifier(backbone, num_classes)
    for p in model.backbone.parameters():
        p.requires_grad = False
    loader = DataLoader(train, batch_size=4, shuffle=True)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.head.parameters(), lr=0.001)
    start = time.perf_counter()
    model.train()
    for _ in range(epochs):
        for inputs, labels in loader:
            optimizer.zero_grad()
            loss = criterion(model(inputs), labels)
            loss.backward()
            optimizer.step()
    seconds = time.perf_counter() - start
    return seconds, xl.evaluate(model, test, batch_size=64)["accuracy"]


def xferlib_feature_extraction(train, test, num_classes, epochs=10):
    """Extract once (inference mode, channels_last), then train the same head on the
    cached features with the same optimizer, batch size and number of steps."""
    backbone = xl.load_backbone("efficientnet_lite0", image_size=IMAGE_SIZE)
    start = time.perf_counter()
    feats, labels = xl.extract_features(backbone, train, progress=False)
    head = nn.Linear(backbone.num_features, num_classes)
    xl.fit(head, xl.feature_dataset(feats, labels), epochs=epochs, lr=0.001, batch_size=4, optimizer="adam", progress=False)
    seconds = time.perf_counter() - start
    test_feats, test_labels = xl.extract_features(backbone, test, progress=False)
    return seconds, xl.evaluate(head, xl.feature_dataset(test_feats, test_labels))["accuracy"]


def bench_feature_extraction(repeats):
    backbone = xl.load_backbone("efficientnet_lite0", image_size=IMAGE_SIZE)
    train, test = data(20, "train", backbone), data(20, "test", backbone)
    k = len(train.classes)
    runs = {"cheatsheet recipe": [], "xferlib (extract once, cached)": []}
    for r in range(repeats):
        xl.seed_everything(r)
        runs["cheatsheet recipe"].append(cheatsheet_feature_extraction(train, test, k))
        xl.seed_everything(r)
        runs["xferlib (extract once, cached)"].append(xferlib_feature_extraction(train, test, k))
    rows = {name: (median([s for s, _ in v]), median([a for _, a in v])) for name, v in runs.items()}
    speedup = rows["cheatsheet recipe"][0] / rows["xferlib (extract once, cached)"][0]
    return {"rows": rows, "speedup": speedup, "n_train": len(train), "n_test": len(test)}


# ---------------------------------------------------------------- extraction throughput
def plain_loop(model, dataset, batch_size=32):
    outs = []
    model.eval()
    with torch.inference_mode():
        for x, _ in DataLoader(dataset, batch_size=batch_size):
            outs.append(model(x))
    return torch.cat(outs)


def bench_extraction(repeats):
    """The plain loop against xl.extract_features at its default, plus the settings it was chosen from."""
    ours = xl.load_backbone("efficientnet_lite0", image_size=IMAGE_SIZE)
    plain = xl.load_backbone("efficientnet_lite0", image_size=IMAGE_SIZE)  # stays in the default memory format
    ds = data(26, "train", ours)
    contenders = {
        "plain inference_mode loop (batch 32, contiguous)": lambda: plain_loop(plain, ds, 32),
        "xl.extract_features (default: batch 32, channels_last)": lambda: xl.extract_features(ours, ds, progress=False),
        "xl.extract_features (batch 16, channels_last)": lambda: xl.extract_features(ours, ds, batch_size=16, progress=False),
        "xl.extract_features (batch 64, channels_last)": lambda: xl.extract_features(ours, ds, batch_size=64, progress=False),
        "xl.extract_features (batch 32, contiguous)": lambda: xl.extract_features(ours, ds, channels_last=False, progress=False),
    }
    plain_loop(plain, xl.few_shot(ds, 1))
    xl.extract_features(ours, xl.few_shot(ds, 1), progress=False)
    times = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    rate = {k: len(ds) / median(v) for k, v in times.items()}
    names = list(rate)
    return {"rate": rate, "ratio": rate[names[1]] / rate[names[0]], "n": len(ds)}


# ---------------------------------------------------------------- fine-tuning throughput
def cheatsheet_fine_tuning_epoch(train, num_classes):
    model = xl.build_classifier(xl.load_backbone("efficientnet_lite0", image_size=IMAGE_SIZE), num_classes)
    loader = DataLoader(train, batch_size=4, shuffle=True)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
    model.train()
    start = time.perf_counter()
    for inputs, labels in loader:
        optimizer.zero_grad()
        loss = criterion(model(inputs), labels)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def xferlib_fine_tuning_epoch(train, num_classes, batch_size=32):
    model = xl.build_classifier(xl.load_backbone("efficientnet_lite0", image_size=IMAGE_SIZE), num_classes)
    start = time.perf_counter()
    xl.fit(model, train, epochs=1, lr=0.001, batch_size=batch_size, optimizer="adam", progress=False)
    return time.perf_counter() - start


def bench_fine_tuning(repeats):
    backbone = xl.load_backbone("efficientnet_lite0", image_size=IMAGE_SIZE)
    train = data(16, "train", backbone)
    k = len(train.classes)
    times = {"cheatsheet loop (batch 4, contiguous)": [], "xl.fit (batch 32, channels_last)": [],
             "xl.fit (batch 4, channels_last)": []}
    for r in range(repeats):
        xl.seed_everything(r)
        times["cheatsheet loop (batch 4, contiguous)"].append(cheatsheet_fine_tuning_epoch(train, k))
        xl.seed_everything(r)
        times["xl.fit (batch 32, channels_last)"].append(xferlib_fine_tuning_epoch(train, k))
        xl.seed_everything(r)
        times["xl.fit (batch 4, channels_last)"].append(xferlib_fine_tuning_epoch(train, k, batch_size=4))
    rate = {name: len(train) / median(v) for name, v in times.items()}
    names = list(rate)
    return {"rate": rate, "ratio": rate[names[1]] / rate[names[0]], "n": len(train)}


# ---------------------------------------------------------------- scaling
def bench_scaling(repeats):
    backbone = xl.load_backbone("efficientnet_lite0", image_size=IMAGE_SIZE)
    rows = []
    for per_class in (10, 20, 40, 80):
        ds = data(per_class, "train", backbone)
        ex, fi = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            feats, labels = xl.extract_features(backbone, ds, progress=False)
            ex.append(time.perf_counter() - start)
            head = nn.Linear(backbone.num_features, len(ds.classes))
            start = time.perf_counter()
            xl.fit(head, xl.feature_dataset(feats, labels), epochs=10, lr=1e-3, batch_size=32, progress=False)
            fi.append(time.perf_counter() - start)
        rows.append({"images": len(ds), "extract_s": median(ex), "fit_s": median(fi)})
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    n = [r["images"] for r in rows]
    ax.plot(n, [r["extract_s"] for r in rows], "o-", label=f"extract_features ({IMAGE_SIZE} px, once)")
    ax.plot(n, [r["fit_s"] for r in rows], "s-", label="fit a linear head, 10 epochs")
    ax.set(xlabel="training images", ylabel="seconds (median)", title="How cost grows with the data")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(DOCS / "benchmarks_scaling.png", dpi=100)
    return {"rows": rows}


# ---------------------------------------------------------------- the course
def bench_course():
    results = {}
    for smoke in (False, True):
        out = ROOT / "build" / f"course_{'smoke' if smoke else 'default'}.json"
        cmd = [sys.executable, str(ROOT / "bench" / "run_notebooks.py"), "--json", str(out)] + (["--smoke"] if smoke else [])
        subprocess.run(cmd, check=False)
        results["smoke" if smoke else "default"] = json.loads(out.read_text()) if out.exists() else []
    return results


# ---------------------------------------------------------------- report
def _rate_section(title: str, note: str, r: dict, goal: float) -> list[str]:
    names = list(r["rate"])
    base = r["rate"][names[0]]
    lines = [f"## {title}", "", note, "", "| contender | images/s | vs the first row |", "| --- | ---: | ---: |"]
    lines += [f"| {k} | {v:.1f} | {v / base:.2f}x |" for k, v in r["rate"].items()]
    return lines + ["", f"**{names[1]} against {names[0]}: {r['ratio']:.2f}x** (goal: at least {goal}x).", ""]


def report(res: dict, repeats: int) -> str:
    lines = ["# Benchmarks", "", f"Machine: {machine()}.", "",
             f"Medians of {repeats} runs per contender, alternating in one process; backbone "
             f"EfficientNet-Lite0 (ImageNet weights) at {IMAGE_SIZE} px on `xl.data.photo_patches`. "
             "Regenerate with `make bench`.", ""]
    if "1" in res:
        r = res["1"]
        lines += ["## 1. Feature extraction: the cheatsheet's recipe against xferlib's route", "",
                  f"{r['n_train']} training images, 10 epochs, Adam at 1e-3, batch 4; test accuracy on {r['n_test']} held-out images.", "",
                  "| route | seconds (train) | test accuracy |", "| --- | ---: | ---: |"]
        lines += [f"| {name} | {s:.1f} | {a:.3f} |" for name, (s, a) in r["rows"].items()]
        lines += ["", f"**Speed-up: {r['speedup']:.1f}x** (goal: at least 10x at no worse accuracy).", ""]
    for key, title, note, goal in [
        ("2", "2. Feature extraction throughput", "images, including decoding and transforms", 1.3),
        ("3", "3. One fine-tuning epoch (whole network trainable)", "images", 1.2),
    ]:
        if key in res:
            lines += _rate_section(title, f"{res[key]['n']} {note}.", res[key], goal)
    if "4" in res:
        lines += ["## 4. The whole course", "",
                  "Each notebook in its own papermill process; peak memory is the kernel's maximum resident set size "
                  "(it includes about 0.4 GiB of CUDA libraries that the CUDA build of PyTorch maps at import).", "",
                  "| notebook | default s | default peak MiB | smoke s | smoke peak MiB | result |",
                  "| --- | ---: | ---: | ---: | ---: | --- |"]
        smoke = {r["notebook"]: r for r in res["4"].get("smoke", [])}
        for r in res["4"].get("default", []):
            s = smoke.get(r["notebook"], {})
            ok = "pass" if not r["error"] and not s.get("error") else f"FAIL {r['error'] or s.get('error')}"
            fmt = lambda v: f"{v:.0f}" if v else "-"  # noqa: E731
            lines.append(f"| {r['notebook']} | {r['seconds']:.1f} | {fmt(r['peak_mib'])} | {s.get('seconds', 0):.1f} | {fmt(s.get('peak_mib'))} | {ok} |")
        total = sum(r["seconds"] for r in res["4"].get("default", []))
        total_smoke = sum(r["seconds"] for r in res["4"].get("smoke", []))
        lines += ["", f"Total: {total:.0f} s at default settings (goal ≤ 900 s), {total_smoke:.0f} s in smoke mode (goal ≤ 180 s).", ""]
    if "5" in res:
        lines += ["## 5. How cost grows", "", "| images | extract s | fit head s (10 epochs) |", "| ---: | ---: | ---: |"]
        lines += [f"| {r['images']} | {r['extract_s']:.2f} | {r['fit_s']:.2f} |" for r in res["5"]["rows"]]
        lines += ["", "![extract and fit time against dataset size](benchmarks_scaling.png)", ""]
    lines += ["## GPU", ""]
    if (DOCS / "benchmarks_gpu.md").exists():
        lines += ["Mixed precision and channels_last against fp32 on a GPU, and two lessons run there: "
                  "[benchmarks_gpu.md](benchmarks_gpu.md) (`python bench/gpu_check.py` on a CUDA machine).", ""]
    else:
        lines += ["No GPU figures: no GPU was available where these benchmarks were run, and none are estimated. "
                  "`python bench/gpu_check.py` on a CUDA machine measures mixed precision and channels_last against "
                  "fp32 fine-tuning and runs two lessons there, into `docs/benchmarks_gpu.md`.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=["1", "2", "3", "4", "5"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=DOCS / "benchmarks.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(torch.get_num_threads())
    results = {}
    steps = {"1": bench_feature_extraction, "2": bench_extraction, "3": bench_fine_tuning, "5": bench_scaling}
    for key in args.only:
        print(f"benchmark {key} ...", flush=True)
        results[key] = bench_course() if key == "4" else steps[key](args.repeats)
    text = report(results, args.repeats)
    xl.storage.write_atomic(args.out, text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
