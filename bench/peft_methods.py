"""What parameter-efficient fine-tuning costs on a CPU, written to docs/benchmarks_peft.md.

    python bench/peft_methods.py                            # both models, about 3 minutes on 2 cores
    python bench/peft_methods.py --quick --out /tmp/p.md    # tiny data, under a minute: checks the code, not figures

Two offline models, each on a small task of the course:

- EfficientNet-Lite0 at 96 px on the 190 training patches of ``xl.data.photo_regions`` (19 classes);
- all-MiniLM-L6-v2 on the 252 training sentences of ``xl.text.course_texts`` (6 topics).

Ways to adapt each one (a new linear head always trains too):

- linear probe: the frozen model runs once over the data (a one-off cost) and the head trains
  on the cached features;
- last block: the last block trains (Lite0: ``block7`` and ``top``; MiniLM: transformer layer 6),
  the model running whole at every step; and the same with the last block's input cached once;
- BitFit: only the bias terms (Lite0's convolutions have none: its BatchNorm shifts);
- LoRA, rank 4, 8 and 16 (Hugging Face ``peft``): Lite0's 31 pointwise (1x1) convolutions,
  MiniLM's query and value projections; IA3 on MiniLM's keys, values and feed-forward inputs;
- full fine-tuning: every weight.

Figures per method: trainable parameters, bytes a task must store (the adapter folder that
``save_pretrained`` writes, or the tensors that differ from the shared base, or the full
``state_dict``), seconds per epoch (median over epochs; the methods take turns in one process,
after a warm-up batch each), and the peak resident memory of training steps (each method in a
fresh subprocess, Linux's high-water mark reset once the model and data are loaded). Then
inference with LoRA r=8: the base model, the adapter kept apart, and the adapter merged.
The frozen parts of every model are held with ``xl.freeze`` (BatchNorm statistics pinned).
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads spinning slow a busy 2-core machine

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import xferlib as xl  # noqa: E402

BATCH = 32
LR = 1e-4
LITE0_LORA_TARGETS = ["conv_pw", "conv_pwl"]  # the 1x1 convolutions of every block; depthwise ones are refused
MINILM_LORA_TARGETS = ["query", "value"]
MINILM_IA3_TARGETS = r".*\.(key|value)$|.*\.layer\.\d+\.output\.dense$"
MINILM_IA3_FEEDFORWARD = r".*\.layer\.\d+\.output\.dense$"
INFERENCE_RANK = 8
TARGETS_NOTE = [  # what tests/test_peft.py checks, written out for the lesson's authors
    "## What peft can target in these two models",
    "",
    "- **EfficientNet-Lite0** (a timm model inside `xl.load_backbone`): `LoraConfig(target_modules=[\"conv_pw\", "
    "\"conv_pwl\"])` matches the 31 pointwise (1x1, `groups=1`) convolutions by name suffix: each block's expansion "
    "and projection. LoRA on an `nn.Conv2d` is two convolutions, r x in x k x k then out x r x 1 x 1; for a 1x1 "
    "convolution that is r x (in + out) parameters, as for a linear layer. The depthwise convolutions (`conv_dw`, "
    "`groups` = channels, 32 to 1152) are refused with a `ValueError`, since peft accepts a grouped convolution only when "
    "the rank is a multiple of its groups. The stem (3x3) and the 1x1 head convolution (`stages.stem.0`, "
    "`stages.top.0`) also accept LoRA when named in full. The model has no biases outside BatchNorm, so BitFit here trains BatchNorm's shifts.",
    "- **all-MiniLM-L6-v2** (a `SentenceTransformer`; `get_peft_model` wraps it whole, or a module holding it and a "
    "head): the attention projections are `query`, `key`, `value` (384 x 384) and `attention.output.dense`; the "
    "feed-forward layers are `intermediate.dense` (384 to 1536) and `output.dense` (1536 to 384). The suffix "
    "`output.dense` matches both the attention output and the feed-forward output, so IA3 here names them with a "
    "regular expression: keys, values, and the feed-forward input of `layer.N.output.dense`.",
    "- **BatchNorm is not frozen by peft.** `get_peft_model` turns off gradients, but in train mode BatchNorm still "
    "updates its running statistics, which the adapter file does not hold: the saved adapter then reloads to other "
    "outputs. Freeze the backbone with `xl.freeze` (which pins BatchNorm) before adding the adapter.",
    "- `modules_to_save=[\"head\"]` trains the new head with the adapter and stores it in the same small folder; "
    "`set_adapter` switches between adapters on one base, and `merge_and_unload` folds LoRA into the weights (a "
    "model with the base's parameter count and the same outputs, within 1e-4).",
]


# --------------------------------------------------------------------------- one method, set up
@dataclass
class Setup:
    """A model ready to train: its batches, how to get logits, and what a task must keep."""

    model: nn.Module
    batches: list  # (inputs, labels) pairs
    forward: Callable  # inputs -> logits
    save: Callable  # folder -> None: writes what one task must store
    oneoff: float | None = None  # seconds spent once, before training (caching)

    def trainable(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def trainer(self):
        """``(step, epoch)``: one optimizer step on a batch, and one pass over all batches."""
        opt = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=LR)

        def step(x, y):
            loss = F.cross_entropy(self.forward(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        def epoch():
            for x, y in self.batches:
                step(x, y)

        self.model.train()  # layers that xl.freeze pinned stay in eval mode
        return step, epoch


def _timed(compute):
    """``compute()`` without gradients, and its seconds: the one-off caching pass of a cached method."""
    start = time.perf_counter()
    with torch.no_grad():
        out = compute()
    return out, time.perf_counter() - start


def _on_cache(model: nn.Module, batches, oneoff: float) -> "Setup":
    """A model that trains on cached inputs and stores its whole ``state_dict`` per task."""
    return Setup(model, batches, model, lambda f: xl.costs.save_tensors(model.state_dict(), f / "task.safetensors"), oneoff)


def trainable_tensors(model: nn.Module) -> dict:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def _batches(x, y):
    return [(x[i : i + BATCH], y[i : i + BATCH]) for i in range(0, len(y), BATCH)]


# --------------------------------------------------------------------------- EfficientNet-Lite0
class Lite0Task:
    name = "EfficientNet-Lite0"
    methods = ["linear probe", "last block", "last block, input cached", "BitFit", "LoRA r=4", "LoRA r=8", "LoRA r=16",
               "full fine-tuning"]

    def __init__(self, quick: bool):
        self.size = 32 if quick else 96
        data = xl.data.photo_regions("train", n_per_class=1 if quick else None, size=self.size,
                                     transform=xl.eval_transform("efficientnet_lite0", self.size))
        self.x = torch.stack([data[i][0] for i in range(len(data))])
        self.y = torch.as_tensor(data.labels)
        self.classes = len(data.classes)
        self.base = xl.load_backbone("efficientnet_lite0", image_size=self.size)  # ImageNet weights, offline
        self.data_text = f"{len(self.y)} patches of `photo_regions`, {self.size} px, {self.classes} classes, batches of {BATCH}"
        self.single_use = False

    def backbone(self):
        if self.single_use:  # the memory probe: one method, no spare copy of the base in memory
            base, self.base = self.base, None
            return base
        return copy.deepcopy(self.base)

    def classifier(self, frozen=True):
        torch.manual_seed(0)
        backbone = self.backbone()
        return xl.build_classifier(xl.freeze(backbone) if frozen else backbone, self.classes)

    def setup(self, method: str) -> Setup:
        batches = _batches(self.x, self.y)
        if method == "linear probe":
            backbone = self.backbone().eval()
            feats, oneoff = _timed(lambda: torch.cat([backbone(x) for x, _ in batches]))
            del backbone
            torch.manual_seed(0)
            return _on_cache(nn.Linear(feats.shape[1], self.classes), _batches(feats, self.y), oneoff)
        if method == "last block, input cached":
            backbone = self.backbone()
            lower, upper = backbone.split(len(backbone.stages) - 2)  # block7 and top train
            lower = xl.freeze(lower)
            del backbone
            maps, oneoff = _timed(lambda: torch.cat([lower(x) for x, _ in batches]))
            del lower
            torch.manual_seed(0)
            return _on_cache(xl.build_classifier(upper, self.classes), _batches(maps, self.y), oneoff)
        if method == "full fine-tuning":
            model = self.classifier(frozen=False)
            return Setup(model, batches, model, lambda f: xl.costs.save_tensors(model.state_dict(), f / "task.safetensors"))
        model = self.classifier()
        if method == "last block":
            xl.freeze_stages(model, len(model.backbone.stages) - 2)  # block7 and top train, their BatchNorm too
            kept = lambda: {**{f"backbone.stages.{i}.{k}": v for i in ("block7", "top")  # noqa: E731
                               for k, v in getattr(model.backbone.stages, i).state_dict().items()},
                            **{f"head.{k}": v for k, v in model.head.state_dict().items()}}
            return Setup(model, batches, model, lambda f: xl.costs.save_tensors(kept(), f / "task.safetensors"))
        if method == "BitFit":
            for name, p in model.backbone.named_parameters():
                p.requires_grad_(name.endswith(".bias"))  # BatchNorm shifts; statistics stay pinned
            return Setup(model, batches, model, lambda f: xl.costs.save_tensors(trainable_tensors(model), f / "task.safetensors"))
        if method.startswith("LoRA"):
            from peft import LoraConfig, get_peft_model

            r = int(method.split("=")[1])
            peft_model = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, target_modules=LITE0_LORA_TARGETS,
                                                          modules_to_save=["head"]))
            return Setup(peft_model, batches, peft_model, lambda f: peft_model.save_pretrained(f))
        raise ValueError(f"unknown method {method!r}")


# --------------------------------------------------------------------------- all-MiniLM-L6-v2


def _layers(encoder):
    return encoder[0].auto_model.encoder.layer


class CachedTop(nn.Module):
    """The encoder's top layer on cached inputs, then mean pooling, unit length and the head."""

    def __init__(self, top, num_classes: int):
        super().__init__()
        self.top = top
        self.head = nn.Linear(384, num_classes)

    def forward(self, cached):
        hidden, mask, tokens = cached
        out = self.top(hidden, mask)
        out = out[0] if isinstance(out, tuple) else out
        weights = tokens.unsqueeze(-1).to(out.dtype)
        return self.head(F.normalize((out * weights).sum(1) / weights.sum(1).clamp(min=1e-9), dim=-1))


class MiniLMTask:
    name = "all-MiniLM-L6-v2"
    methods = ["linear probe", "last block", "last block, input cached", "BitFit", "LoRA r=4", "LoRA r=8", "LoRA r=16",
               "IA3", "full fine-tuning"]

    def __init__(self, quick: bool):
        data = xl.text.course_texts("train")
        if quick:
            data = data.subset(list(range(0, len(data), 21)))
        self.texts, self.y = data.texts, torch.as_tensor(data.labels)
        self.classes = len(data.classes)
        self.base = xl.text.load_text_encoder("cpu")
        for p in self.base[0].auto_model.pooler.parameters():  # mean pooling never uses BERT's pooler
            p.requires_grad_(False)
        self.tokens = [self.base.preprocess(self.texts[i : i + BATCH]) for i in range(0, len(self.texts), BATCH)]
        self.data_text = f"{len(self.y)} sentences of `course_texts`, {self.classes} classes, batches of {BATCH}"
        self.single_use = False

    def encoder(self):
        if self.single_use:
            base, self.base = self.base, None
            return base
        return copy.deepcopy(self.base)

    def batches(self):
        return [(t, self.y[i * BATCH : (i + 1) * BATCH]) for i, t in enumerate(self.tokens)]

    def classifier(self, frozen=True):
        encoder = self.encoder()
        torch.manual_seed(0)
        if frozen:
            xl.freeze(encoder)
        return xl.text.SentenceClassifier(encoder, self.classes)

    def setup(self, method: str) -> Setup:
        batches = self.batches()
        if method == "linear probe":
            encoder = self.encoder()
            feats, oneoff = _timed(lambda: xl.text.encode_texts(encoder, self.texts, batch_size=BATCH))
            del encoder
            torch.manual_seed(0)
            return _on_cache(nn.Linear(384, self.classes), _batches(feats, self.y), oneoff)
        if method == "last block, input cached":
            encoder = xl.freeze(self.encoder()).eval()
            top = _layers(encoder)[-1]
            caught = {}

            def catch(module, args, kwargs):
                mask = args[1] if len(args) > 1 else kwargs.get("attention_mask")
                caught["in"] = (args[0].detach().clone(), None if mask is None else mask.detach().clone())

            def run_and_catch():
                cached = []
                for features, y in batches:
                    encoder(dict(features))
                    cached.append(((*caught["in"], features["attention_mask"]), y))
                return cached

            hook = top.register_forward_pre_hook(catch, with_kwargs=True)
            cached, oneoff = _timed(run_and_catch)
            hook.remove()
            xl.unfreeze(top)
            torch.manual_seed(0)
            model = CachedTop(top, self.classes)
            del encoder
            return _on_cache(model, cached, oneoff)
        if method == "full fine-tuning":
            model = self.classifier(frozen=False)  # the unused pooler stays frozen (see __init__)
            return Setup(model, batches, model, lambda f: xl.costs.save_tensors(model.state_dict(), f / "task.safetensors"))
        model = self.classifier()
        if method == "last block":
            xl.unfreeze(_layers(model.encoder)[-1])
            return Setup(model, batches, model, lambda f: xl.costs.save_tensors(trainable_tensors(model), f / "task.safetensors"))
        if method == "BitFit":
            for name, p in model.encoder.named_parameters():
                p.requires_grad_(name.endswith(".bias") and ".pooler." not in name)
            return Setup(model, batches, model, lambda f: xl.costs.save_tensors(trainable_tensors(model), f / "task.safetensors"))
        from peft import IA3Config, LoraConfig, get_peft_model

        if method.startswith("LoRA"):
            r = int(method.split("=")[1])
            config = LoraConfig(r=r, lora_alpha=2 * r, target_modules=MINILM_LORA_TARGETS, modules_to_save=["head"])
        elif method == "IA3":
            config = IA3Config(target_modules=MINILM_IA3_TARGETS, feedforward_modules=MINILM_IA3_FEEDFORWARD,
                               modules_to_save=["head"])
        else:
            raise ValueError(f"unknown method {method!r}")
        peft_model = get_peft_model(model, config)
        return Setup(peft_model, batches, peft_model, lambda f: peft_model.save_pretrained(f))


TASKS = {"lite0": Lite0Task, "minilm": MiniLMTask}


# --------------------------------------------------------------------------- measurements
def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def _reset_peak() -> bool:
    """Reset the kernel's record of this process's peak memory (Linux); False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_kib(reset: bool) -> int:
    if reset:
        with open("/proc/self/status") as f:
            return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux: the whole run's peak


def memory_probe(task_key: str, method: str, quick: bool, steps: int) -> dict:
    """In this (fresh) process: load one method, then the peak memory of a few training steps."""
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    after_torch = _rss_kib()  # torch and xferlib are imported
    import peft  # noqa: F401  (every method's process imports it, as a lesson would)

    after_peft = _rss_kib()
    task = TASKS[task_key](quick)
    task.single_use = True
    setup = task.setup(method)
    del task
    step, _ = setup.trainer()
    gc.collect()
    loaded = _rss_kib()
    reset = _reset_peak()
    for i in range(steps):
        step(*setup.batches[i % len(setup.batches)])
    return {"torch_mib": after_torch / 1024, "peft_mib": after_peft / 1024, "loaded_mib": loaded / 1024,
            "peak_mib": _peak_kib(reset) / 1024, "since_load": reset}


def measure_memory(task_key: str, methods: list, quick: bool, steps: int, parallel: int = 2) -> dict:
    """Each method's memory probe in its own fresh process, ``parallel`` at a time (each process's
    resident memory is its own; nothing is timed here)."""
    from concurrent.futures import ThreadPoolExecutor

    def probe(method):
        cmd = [sys.executable, __file__, "--memory-probe", task_key, method, "--steps", str(steps), "--batch", str(BATCH)]
        cmd += ["--quick"] if quick else []
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"memory probe {task_key}/{method} failed:\n{proc.stderr[-2000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    with ThreadPoolExecutor(parallel) as pool:
        return dict(zip(methods, pool.map(probe, methods)))


def time_methods(task, methods, repeats: int) -> dict:
    """Per method: trainable parameters, seconds per epoch (median), one-off seconds, stored bytes."""
    setups = {m: task.setup(m) for m in methods}
    trainers = {m: s.trainer() for m, s in setups.items()}
    for m, (step, _) in trainers.items():  # warm-up: the first and the last (often smaller) batch
        for x, y in (setups[m].batches[0], setups[m].batches[-1]):
            step(x, y)
    seconds = {m: [] for m in methods}
    for _ in range(repeats):  # the methods take turns, so a busy moment of the machine hits them all
        for m, (_, epoch) in trainers.items():
            start = time.perf_counter()
            epoch()
            seconds[m].append(time.perf_counter() - start)
    return {m: {"trainable": s.trainable(), "epoch_s": statistics.median(seconds[m]), "oneoff_s": s.oneoff,
                "stored": xl.costs.saved_bytes(s.save)} for m, s in setups.items()}


def time_inference(task, repeats: int) -> dict:
    """Seconds for one pass over the data: base model, LoRA adapter kept apart, adapter merged."""
    method = f"LoRA r={INFERENCE_RANK}"
    adapted = task.setup(method)
    step, epoch = adapted.trainer()
    epoch()  # trained for an epoch: an adapter that is not zero
    adapted.model.eval()
    base = task.classifier().eval()
    merged = copy.deepcopy(adapted.model).merge_and_unload().eval()
    models = {"base model (new head)": base, f"LoRA r={INFERENCE_RANK}, adapter kept apart": adapted.model,
              f"LoRA r={INFERENCE_RANK}, merged": merged}
    batches = adapted.batches

    def run(model):
        with torch.inference_mode():
            return torch.cat([model(x) for x, _ in batches])

    outputs = {name: run(model) for name, model in models.items()}  # also the warm-up
    names = list(models)
    diff = (outputs[names[1]] - outputs[names[2]]).abs().max().item()
    seconds = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            start = time.perf_counter()
            run(model)
            seconds[name].append(time.perf_counter() - start)
    return {"seconds": {n: statistics.median(s) for n, s in seconds.items()}, "merge_diff": diff,
            "params": {n: sum(p.numel() for p in m.parameters()) for n, m in models.items()}}


# --------------------------------------------------------------------------- report
LESSON_LIMIT_MIB = 1536  # a lesson must run in 1.5 GiB


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.0f} KiB"


def _params(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} k"


def _ratio(x: float) -> str:
    return f"{x:.2f}x" if x >= 0.095 else f"{x:.3f}x"


def _span(values, fmt) -> str:
    lo, hi = min(values), max(values)
    lo_s, hi_s = fmt(lo), fmt(hi)
    return lo_s if lo_s == hi_s else f"{lo_s} to {hi_s}"


def _pct(x: float) -> str:
    return f"{x:.1%}" if x >= 0.001 else f"{x:.2%}"


def task_section(title: str, rows: dict, memory: dict, inference: dict) -> list[str]:
    full = rows["full fine-tuning"]
    lines = [
        f"## {title}",
        "",
        "| method | trainable parameters | vs full | stored per task | vs full | seconds per epoch | vs full "
        "| one-off seconds | peak memory in training | training adds |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for m, r in rows.items():
        mem = memory.get(m)
        mem_cells = f"{mem['peak_mib']:.0f} MiB | {mem['peak_mib'] - mem['loaded_mib']:.0f} MiB" if mem else "not measured | "
        oneoff = "" if r["oneoff_s"] is None else f"{r['oneoff_s']:.2f}"
        lines.append(
            f"| {m} | {_params(r['trainable'])} | {_pct(r['trainable'] / full['trainable'])} | {_size(r['stored'])} "
            f"| {_pct(r['stored'] / full['stored'])} | {r['epoch_s']:.3f} | {_ratio(r['epoch_s'] / full['epoch_s'])} "
            f"| {oneoff} | {mem_cells} |"
        )
    lines += ["", "Inference over the same data (eval mode, no gradients), median seconds for one pass:", "",
              "| model | parameters | seconds | vs base |", "| --- | ---: | ---: | ---: |"]
    base_s = next(iter(inference["seconds"].values()))
    for name, sec in inference["seconds"].items():
        lines.append(f"| {name} | {_params(inference['params'][name])} | {sec:.3f} | {_ratio(sec / base_s)} |")
    lines += ["", f"Largest difference between the outputs of the adapter kept apart and merged: {inference['merge_diff']:.1e}.", ""]
    return lines


def summary(sections) -> list[str]:
    """Plain sentences read off the figures (so that they stay true when the script is rerun)."""
    out = []
    for key, rows, memory, inference, _ in sections:
        full = rows["full fine-tuning"]
        lora = {m: r for m, r in rows.items() if m.startswith("LoRA")}
        share = lambda field, group: [r[field] / full[field] for r in group.values()]  # noqa: E731
        lora_time = share("epoch_s", lora)
        inf = list(inference["seconds"].values())
        apart, merged = inf[1] / inf[0], inf[2] / inf[0]
        text = (f"- **{TASKS[key].name}.** LoRA ({', '.join(m.split()[-1] for m in lora)}) trains "
                f"{_span(share('trainable', lora), _pct)} of the parameters that full fine-tuning trains and stores "
                f"{_span(share('stored', lora), _pct)} as much per task. An epoch takes {_span(lora_time, _ratio)} the time "
                "of full fine-tuning")
        others = {m: r["epoch_s"] / full["epoch_s"] for m, r in rows.items() if m in ("BitFit", "IA3")}
        if others:
            text += " (" + ", ".join(f"{m} {_ratio(v)}" for m, v in others.items()) + ")"
        text += (": every method with trainable weights in the first layers still runs the whole network forward and "
                 "backward, and skips only the frozen weights' own gradients and optimizer updates.")
        if apart >= 1.3:
            text += (f" LoRA also adds work of its own: kept apart, its extra layers make inference {_ratio(apart)} as slow")
            bitfit = others.get("BitFit")
            if bitfit is not None and bitfit < 0.8 * min(lora_time):
                text += ", which is why BitFit, which adds no layer, trains faster here"
            text += "."
        if "full fine-tuning" in memory and any(m in memory for m in lora):
            add = lambda m: memory[m]["peak_mib"] - memory[m]["loaded_mib"]  # noqa: E731
            full_add, lora_add = add("full fine-tuning"), max(add(m) for m in lora if m in memory)
            text += f" Training adds at most {lora_add:.0f} MiB to the loaded process with LoRA, against {full_add:.0f} MiB"
            if lora_add >= 0.7 * full_add:
                text += (" with full fine-tuning: most of a training step's memory is activations, which any method that "
                         "trains the first layers keeps for the backward pass.")
            else:
                state = 12 * (full["trainable"] - max(r["trainable"] for r in lora.values())) / 2**20
                text += (f" with full fine-tuning: about {state:.0f} MiB of the difference is a gradient and AdamW's two "
                         "running averages for every weight (12 bytes each), the rest the layer inputs kept to compute "
                         "weight gradients.")
        cached = rows.get("last block, input cached")
        if cached:
            text += (f" Caching the last block's input once ({cached['oneoff_s']:.2f} s) brings an epoch of last-block "
                     f"training to {_ratio(cached['epoch_s'] / full['epoch_s'])} the full one; adapters spread through "
                     "every layer cannot be cached that way.")
        text += (f" At inference the adapter kept apart takes {_ratio(apart)} the time of the base model; merged into "
                 f"the weights it is the same computation as the base (measured: {_ratio(merged)}).")
        out.append(text)
    probes = {(key, m): v for key, _, memory, _, _ in sections for m, v in memory.items()}
    if probes:
        (key, method), worst = max(probes.items(), key=lambda kv: kv[1]["peak_mib"])
        over = [f"{TASKS[k].name} {m}" for (k, m), v in probes.items() if v["peak_mib"] > LESSON_LIMIT_MIB]
        text = (f"- **Memory budget.** The highest peak, {worst['peak_mib']:.0f} MiB ({TASKS[key].name}, {method}), is "
                f"{'above' if worst['peak_mib'] > LESSON_LIMIT_MIB else 'below'} a lesson's 1.5 GiB ({LESSON_LIMIT_MIB} MiB)"
                " in a plain process; a notebook kernel holds more (Jupyter, matplotlib), and one lesson may hold both models.")
        if over:
            text += f" Over the limit at this batch size: {', '.join(over)}; a lesson needs smaller batches or images there."
        out.append(text)
    return out


def main(argv=None) -> int:
    global BATCH
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny data, one epoch, two memory probes per model: not figures")
    parser.add_argument("--repeats", type=int, default=None, help="timed epochs per method (default 3; 1 with --quick)")
    parser.add_argument("--models", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--batch", type=int, default=BATCH, help=f"examples per training batch (default {BATCH})")
    parser.add_argument("--steps", type=int, default=3, help="training steps per memory probe")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks_peft.md")
    parser.add_argument("--memory-probe", nargs=2, metavar=("MODEL", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    BATCH = args.batch
    if args.memory_probe:
        print(json.dumps(memory_probe(*args.memory_probe, args.quick, args.steps)))
        return 0
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    repeats = args.repeats or (1 if args.quick else 3)
    started = time.perf_counter()
    sections = []
    for key in args.models:
        t0 = time.perf_counter()
        task = TASKS[key](args.quick)
        methods = task.methods if not args.quick else [m for m in task.methods if m not in ("LoRA r=4", "LoRA r=16")]
        t1 = time.perf_counter()
        rows = time_methods(task, methods, repeats)
        t2 = time.perf_counter()
        inference = time_inference(task, repeats)
        t3 = time.perf_counter()
        data_text = task.data_text
        del task
        gc.collect()
        probed = methods if not args.quick else [f"LoRA r={INFERENCE_RANK}", "full fine-tuning"]
        memory = measure_memory(key, probed, args.quick, args.steps)
        print(f"{key}: {time.perf_counter() - t0:.0f} s (load {t1 - t0:.0f}, train {t2 - t1:.0f}, inference {t3 - t2:.0f}, "
              f"memory {time.perf_counter() - t3:.0f})", file=sys.stderr)
        sections.append((key, rows, memory, inference, data_text))
    total = time.perf_counter() - started

    import peft
    import transformers

    options = (" --quick" if args.quick else "") + (f" --batch {BATCH}" if BATCH != 32 else "")
    cores = os.cpu_count()
    lines = [
        "# Parameter-efficient fine-tuning on a CPU: what each method costs",
        "",
        f"Regenerate with `python bench/peft_methods.py{options}` ({total / 60:.1f} minutes here). Machine: a "
        f"{cores}-core CPU shared with other jobs ({torch.get_num_threads()} torch threads), so timings are noisy. "
        f"**Figures are medians on a shared {cores}-core CPU**: each time is the median of {repeats} epoch(s), the "
        "methods taking turns in one process, and every ratio is against full fine-tuning measured in the same run. "
        f"torch {torch.__version__}, peft {peft.__version__}, transformers {transformers.__version__}."
        + (" **A quick run: tiny data, not figures to quote.**" if args.quick else ""),
        "",
        "Columns: *trainable parameters* include the new head; *stored per task* is what one task must keep "
        "beside the shared pretrained model (peft's `save_pretrained` folder for LoRA and IA3, the changed tensors "
        "for the others, the whole `state_dict` for full fine-tuning); *one-off seconds* is the caching pass "
        "before training; *peak memory in training* is the process's resident set (as `make bench` measures a "
        f"lesson) during {args.steps} training steps of up to {BATCH} examples, each method in a fresh process, and "
        "*training adds* is that peak minus the memory once the model and data were loaded.",
        "",
    ]
    probes = [m for _, _, memory, _, _ in sections for m in memory.values()]
    if probes:
        lines += [
            f"Memory to plan for: a fresh process holds about {statistics.median(p['torch_mib'] for p in probes):.0f} MiB "
            f"after `import torch, xferlib` (the CUDA build of PyTorch maps its libraries) and "
            f"{statistics.median(p['peft_mib'] for p in probes):.0f} MiB once `peft` (which brings transformers and "
            "accelerate) is imported too, before any model or data; every peak below includes it.",
            "",
        ]
    for key, rows, memory, inference, data_text in sections:
        lines += task_section(f"{TASKS[key].name}: {data_text}", rows, memory, inference)
    lines += ["## What the numbers show", "", *summary(sections), "", *TARGETS_NOTE, ""]
    text = "\n".join(lines)
    xl.storage.write_atomic(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
