"""1 vs 2 processes (one thread each): the same ``xl.fit`` runs under torchrun, timed, with the share
of an epoch spent communicating. Lesson 14 launches the worker; the section "1 vs 2 processes (one
thread each) on this machine" of docs/benchmarks.md is this script's report.

    python bench/ddp.py                       # 1 process, then 2 processes twice; prints a Markdown report
    python bench/ddp.py --out report.md       # ... and writes it
    python bench/ddp.py --quick               # toy sizes: checks the script, measures little
    python bench/ddp.py --worker OUT                                       # one run on one process, and
    torchrun --standalone --nproc_per_node=2 bench/ddp.py --worker OUT     # on two (what lesson 14 launches)

Two workloads, the two ends of lesson 14's cost table, on the same digits images:

- **full fine-tuning**: EfficientNet-Lite0 (ImageNet weights), every weight trainable, BatchNorm
  statistics pinned by ``xl.freeze`` first (each image is then independent of the others in its batch);
  SGD with momentum;
- **head on cached features**: a linear head on Lite0's pooled features, computed once; AdamW.

Each is trained by ``xl.fit(seed=0)`` with a global batch of ``--batch``; rank 0 writes the final
weights into the folder. A run of one process also trains full fine-tuning a second time from
weights nudged by 1e-7 (the control: how far rounding alone moves the result). A run of several
processes that finds a one-process run's weights in its folder records how far its own are from
them; then it times epochs of the same training three ways, taking turns: rank 0 alone on the whole
global batches while the others wait ("1 process", measured in the same run), every process with
DistributedDataParallel's gradient all-reduce, and every process without it (``no_sync``, each
stepping on its own gradient): the last two differ by what communicating, and waiting for the slower
process, costs. It also times one all-reduce of a tensor the size of the gradient.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORKLOADS = ("full fine-tuning", "head on cached features")
LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


# --------------------------------------------------------------------------- the worker (under torchrun)
def _slug(name: str) -> str:
    return name.replace(" ", "_")


def _models(backbone, num_features: int):
    """The two workloads' models, built alike on every process and in every run (seeded)."""
    import torch
    from torch import nn

    import xferlib as xl

    torch.manual_seed(0)
    full = xl.build_classifier(xl.freeze(copy.deepcopy(backbone), weights=False), 10)  # BatchNorm pinned, all weights train
    torch.manual_seed(0)
    head = nn.Linear(num_features, 10)
    return {WORKLOADS[0]: full, WORKLOADS[1]: head}


def _timed_epochs(model, x, y, batch: int, repeats: int, lr: float, optimizer: str, epochs_per_timing: int) -> dict:
    """Seconds per epoch, interleaved: rank 0 alone on whole global batches while the others wait
    ("1 process"), every process on its part with DDP's gradient all-reduce ("2 processes"), and the
    same without the all-reduce ("no_sync"); each figure the slowest process's, over
    ``epochs_per_timing`` epochs divided by their number."""
    import torch
    from torch import nn

    import xferlib as xl
    from xferlib import distributed

    world = distributed.world()
    conv = x.dim() == 4
    if conv:
        model = model.to(memory_format=torch.channels_last)
    solo = copy.deepcopy(model)  # a copy made before DDP hooks the model's parameters
    net = distributed.wrap(model, torch.device("cpu"))
    def make(m):
        return xl.training.make_optimizer([{"params": [p for p in m.parameters() if p.requires_grad]}], optimizer, lr)

    opts = {"1 process": make(solo), "sync": make(model)}
    opts["no_sync"] = opts["sync"]
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(1))
    batches = [order[i:i + batch] for i in range(0, len(y) - batch + 1, batch)]  # full global batches only
    part = batch // world.size
    seconds = {"1 process": [], "sync": [], "no_sync": []}

    def step(module, opt, idx, context):
        xb = x[idx].contiguous(memory_format=torch.channels_last) if conv else x[idx]
        with context:
            loss = nn.functional.cross_entropy(module(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
        opt.step()

    for _ in range(repeats):
        for mode in seconds:
            distributed.barrier()
            start = time.perf_counter()
            for _ in range(epochs_per_timing):
                for idx in batches:
                    if mode == "1 process":
                        if world.is_main:
                            step(solo, opts[mode], idx, contextlib.nullcontext())
                    else:
                        own = idx[world.rank * part:(world.rank + 1) * part]
                        step(net, opts[mode], own, net.no_sync() if mode == "no_sync" else contextlib.nullcontext())
            distributed.barrier()  # the others wait for rank 0's solo epochs here
            seconds[mode].append(distributed.all_reduce_max([(time.perf_counter() - start) / epochs_per_timing])[0])
    return seconds


def _allreduce_seconds(numel: int, repeats: int = 20) -> list[float]:
    """Seconds of one all-reduce of ``numel`` float32 numbers (gloo), each timed alone."""
    import torch
    import torch.distributed as dist

    from xferlib import distributed

    buffer = torch.zeros(numel)
    out = []
    for _ in range(repeats + 2):
        distributed.barrier()
        start = time.perf_counter()
        dist.all_reduce(buffer)
        out.append(distributed.all_reduce_max([time.perf_counter() - start])[0])
    return out[2:]  # the first two warm the connection up


def weight_difference(folder: Path, name: str, a="1", b="2") -> float:
    """The largest absolute difference between the final weights of two runs of ``name`` in ``folder``:
    ``"1"`` and ``"2"`` processes, or ``"nudged"`` (one process, from weights nudged by 1e-7)."""
    import torch

    wa, wb = (torch.load(folder / f"weights-{n}-{_slug(name)}.pt") for n in (a, b))
    return max((wa[k].float() - wb[k].float()).abs().max().item() for k in wa)


SETTINGS = {WORKLOADS[0]: {"optimizer": "sgd", "lr": 1e-2, "epochs_per_timing": 1},
            WORKLOADS[1]: {"optimizer": "adamw", "lr": 1e-3, "epochs_per_timing": 20}}  # epochs of milliseconds: timed 20 at a time


def worker(out: Path, epochs: int, image_size: int, n_images: int, batch: int, repeats: int) -> None:
    """One run under torchrun (or plain python): both workloads trained by ``xl.fit``, rank 0 writing
    the final weights and a JSON of the timings into ``out``."""
    import torch
    from torch.utils.data import TensorDataset

    import xferlib as xl
    from xferlib import distributed

    world = distributed.setup()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    started = time.perf_counter()
    xl.seed_everything(0)
    backbone = xl.load_backbone("efficientnet_lite0", image_size=image_size)
    images = xl.data.digits("train", size=image_size).with_transform(backbone.transform)
    x, y = xl.data.stack(xl.data.Subset(images, list(range(n_images))))
    feats, _ = xl.extract_features(backbone, TensorDataset(x, y), batch_size=64, progress=False)  # each process its part
    inputs = {WORKLOADS[0]: x, WORKLOADS[1]: feats}
    result = {"processes": world.size, "threads": torch.get_num_threads(), "epochs": epochs, "batch": batch,
              "images": n_images, "image_size": image_size, "repeats": repeats,
              "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"),
              "setup_seconds": time.perf_counter() - started, "workloads": {}}
    for name, model in _models(backbone, backbone.num_features).items():
        opt = SETTINGS[name]
        history = xl.fit(model, (inputs[name], y), epochs=epochs, lr=opt["lr"], optimizer=opt["optimizer"], batch_size=batch,
                         seed=0, progress=False)
        row = {"fit_epoch_seconds": [h["seconds"] for h in history], "train_loss": history[-1]["train_loss"],
               "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad), "steps_per_epoch": n_images // batch}
        if world.is_main:
            torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, out / f"weights-{world.size}-{_slug(name)}.pt")
        if not world.active and name == WORKLOADS[0]:  # the control: one process again, from weights nudged by 1e-7
            nudged = _models(backbone, backbone.num_features)[name]
            with torch.no_grad():
                g = torch.Generator().manual_seed(1)
                for p in nudged.parameters():
                    p.add_(1e-7 * torch.randn(p.shape, generator=g))
            xl.fit(nudged, (inputs[name], y), epochs=epochs, lr=opt["lr"], optimizer=opt["optimizer"], batch_size=batch,
                   seed=0, progress=False)
            torch.save(nudged.state_dict(), out / f"weights-nudged-{_slug(name)}.pt")
        if world.active and world.is_main and (out / f"weights-1-{_slug(name)}.pt").exists():
            row["difference_to_1_process"] = weight_difference(out, name, "1", str(world.size))
            if (out / f"weights-nudged-{_slug(name)}.pt").exists():
                row["nudged_difference"] = weight_difference(out, name, "1", "nudged")
        if world.active:
            fresh = _models(backbone, backbone.num_features)[name]
            row["timed"] = _timed_epochs(fresh, inputs[name], y, batch, repeats, opt["lr"], opt["optimizer"], opt["epochs_per_timing"])
            row["allreduce_seconds"] = _allreduce_seconds(row["trainable"])
        result["workloads"][name] = row
    if world.is_main:
        (out / f"run-{world.size}.json").write_text(json.dumps(result, indent=1))


# --------------------------------------------------------------------------- the launcher and the report
def launch(processes: int, out: Path, args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    """``python bench/ddp.py --worker out ...`` (1 process: no process group) or ``torchrun --standalone
    --nproc_per_node=processes bench/ddp.py --worker out ...``, one thread per process."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}
    env.update(OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", XFERLIB_DEVICE="cpu",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
    launcher = [sys.executable] if processes == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                         f"--nproc_per_node={processes}"]
    command = [*launcher, str(Path(__file__).resolve()), "--worker", str(out), *args]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{processes} process(es) failed:\n{proc.stderr[-3000:]}")
    return proc


def summary(results: list[dict]) -> dict:
    """Per workload, from the runs of several processes: median seconds per epoch of 1 process and of
    several with and without the all-reduce (interleaved in the same run), the speed-up, the share
    of an epoch spent communicating (median over repeats), and the all-reduce's milliseconds."""
    rows = {}
    for name in WORKLOADS:
        timed = [r["workloads"][name]["timed"] for r in results]
        pick = lambda mode: [s for t in timed for s in t[mode]]  # noqa: E731
        one, sync, free = pick("1 process"), pick("sync"), pick("no_sync")
        rows[name] = {"one_s": statistics.median(one), "sync_s": statistics.median(sync), "no_sync_s": statistics.median(free),
                      "speed_up": statistics.median([a / b for a, b in zip(one, sync)]),
                      "communication_share": statistics.median([(s - f) / s for s, f in zip(sync, free)]),
                      "allreduce_ms": 1000 * statistics.median([s for r in results for s in r["workloads"][name]["allreduce_seconds"]]),
                      "gradient_mib": results[0]["workloads"][name]["trainable"] * 4 / 2**20,
                      "steps_per_epoch": results[0]["workloads"][name]["steps_per_epoch"], "repeats": len(one)}
    return rows


def report(rows: dict, results: list[dict]) -> str:
    """The Markdown section of docs/benchmarks.md."""
    import platform

    import torch

    first = results[0]
    loads = ", ".join(f"{r['load_average']:.1f}" for r in results)
    lines = ["## 1 vs 2 processes (one thread each) on this machine", "",
             f"`python bench/ddp.py`: `torchrun --standalone --nproc_per_node=2`, `OMP_NUM_THREADS=1` per process; "
             f"{first['images']} digits images at {first['image_size']} px, global batch {first['batch']} "
             f"({first['batch'] // 2} per process). In each run, after `xl.fit`, three contenders take turns "
             f"({len(results)} run(s) x {first['repeats']} repeats; medians): rank 0 alone on the whole batches while "
             "the other process waits (*1 process*), both processes with DDP's gradient all-reduce (*2 processes*), "
             f"and both without it (`no_sync`). Machine: {os.cpu_count()} cores, torch {torch.__version__}, "
             f"{platform.machine()}; load average (other jobs on the machine) "
             f"{loads} when the runs started.", "",
             "| workload | trainable weights | 1 process (s/epoch) | 2 processes (s/epoch) | vs 1 process "
             "| 2 processes, no all-reduce | communication share | one all-reduce of the gradient |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in rows.items():
        trainable = first["workloads"][name]["trainable"]
        lines.append(f"| {name} | {trainable:,} | {r['one_s']:.4f} | {r['sync_s']:.4f} | {r['speed_up']:.2f}x | {r['no_sync_s']:.4f} | "
                     f"{100 * r['communication_share']:.0f} % | {r['allreduce_ms']:.2f} ms ({r['gradient_mib']:.2f} MiB) |")
    lines += ["", "*vs 1 process*: the median of the per-repeat ratios (1 process / 2 processes; above 1: two are faster). "
              "*communication share*: the median over repeats of (2 processes − no all-reduce) / 2 processes: exchanging "
              "gradients and waiting for the slower process. An epoch has "
              + ", ".join(f"{r['steps_per_epoch']} steps ({name})" for name, r in rows.items()) + ".", "",
              "Final weights of `xl.fit`, one process against two (largest absolute difference): "
              + "; ".join(f"{name} {first['workloads'][name]['difference_to_1_process']:.1e}" for name in rows)
              + ". Full fine-tuning amplifies rounding: one process against one process whose starting weights were "
              f"nudged by 1e-7 differ by {first['workloads'][WORKLOADS[0]]['nudged_difference']:.1e}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", type=Path, help="run one measurement (under torchrun) into this folder")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5, help="turns of the three timed contenders per run")
    parser.add_argument("--rounds", type=int, default=2, help="launches of 2 processes, after one of 1 process")
    parser.add_argument("--quick", action="store_true", help="toy sizes: checks the script")
    parser.add_argument("--out", type=Path, help="write the Markdown report here too")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.image_size, args.images, args.batch, args.repeats, args.rounds = 2, 32, 64, 16, 1, 1
    sizes = ["--epochs", str(args.epochs), "--image-size", str(args.image_size), "--images", str(args.images),
             "--batch", str(args.batch), "--repeats", str(args.repeats)]
    if args.worker:
        args.worker.mkdir(parents=True, exist_ok=True)
        worker(args.worker, args.epochs, args.image_size, args.images, args.batch, args.repeats)
        return 0
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        launch(1, Path(tmp), sizes)  # one process first: its weights are what the runs of two are compared with
        for _ in range(args.rounds):
            launch(2, Path(tmp), sizes)
            results.append(json.loads((Path(tmp) / "run-2.json").read_text()))
    text = report(summary(results), results)
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
