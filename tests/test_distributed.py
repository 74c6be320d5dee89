"""xferlib under torchrun: two processes compute what one computes, and a failure stops the run.

The end-to-end tests start ``python -m torch.distributed.run --standalone --nproc_per_node=2`` on
scripts written into a temporary folder (gloo on the CPU, one thread per process) and compare
with the same script run by a plain ``python``, where no process group exists.
"""

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import xferlib as xl
from xferlib import distributed

REPO = Path(__file__).resolve().parent.parent
N_ITEMS, BATCH, EPOCHS = 67, 16, 3  # four global batches of 16, then one of 3: parts of 2 and 1


def _env(tmp_path: Path, timeout_s: float) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in distributed.LAUNCH_VARS + ("LOCAL_RANK", "LOCAL_WORLD_SIZE")}
    env.update(PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])), OMP_NUM_THREADS="1",
               OMP_WAIT_POLICY="PASSIVE", XFERLIB_DIST_TIMEOUT=str(timeout_s), XFERLIB_CACHE=str(tmp_path / "cache"),
               XFERLIB_DEVICE="cpu")
    return env


def run_script(tmp_path: Path, source: str, *args: str, processes: int | None = 2, timeout_s: float = 60,
               limit_s: float = 120) -> subprocess.CompletedProcess:
    """Run ``source`` under torchrun with ``processes`` processes, or with plain python (None)."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(source))
    launcher = [sys.executable] if processes is None else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    return subprocess.run([*launcher, str(script), *args], cwd=tmp_path, env=_env(tmp_path, timeout_s),
                          capture_output=True, text=True, timeout=limit_s)


WORKER = f"""
    import sys
    from pathlib import Path

    import torch
    from torch import nn

    import xferlib as xl
    from xferlib import checkpoints, distributed, storage

    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    world = distributed.setup()

    writes = []  # every file this process writes, through the one atomic writer
    _save = storage.save_atomic
    def recording(obj, path):
        writes.append(Path(path).name)
        return _save(obj, path)
    storage.save_atomic = checkpoints.save_atomic = recording


    class Recorded(torch.utils.data.Dataset):
        \"\"\"Remembers which items this process read.\"\"\"
        def __init__(self, x, y):
            self.x, self.y, self.seen = x, y, []
        def __len__(self):
            return len(self.y)
        def __getitem__(self, i):
            self.seen.append(int(i))
            return self.x[i], self.y[i]


    g = torch.Generator().manual_seed(0)
    y = torch.arange({N_ITEMS}) % 3
    train = Recorded(torch.randn({N_ITEMS}, 4, generator=g) + y[:, None].float(), y)
    val = torch.utils.data.TensorDataset(torch.randn(41, 4, generator=g), torch.arange(41) % 3)

    torch.manual_seed(1 + world.rank)  # each process starts from other weights: the wrapper copies rank 0's
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3))  # no BatchNorm, no dropout
    history = xl.fit(model, train, val, epochs={EPOCHS}, lr=0.05, batch_size={BATCH}, seed=3, scheduler="cosine",
                     progress=False)
    state = {{k: v.clone() for k, v in model.state_dict().items()}}
    seen = list(train.seen)
    metrics = xl.evaluate(model, val, batch_size=10)
    logits, labels = xl.predict(model, val, batch_size=10)
    features, _ = xl.extract_features(model[:2], val, batch_size=8, cache=out / "cache")
    again, _ = xl.extract_features(model[:2], val, batch_size=8, cache=out / "cache")  # from the cache
    path = xl.save_checkpoint(out / "model.pt", model, epoch={EPOCHS})
    assert path.is_file()  # on every process, once save_checkpoint returns
    try:
        xl.fit(model, train, epochs=1, batch_size=15, progress=False)
        refused = None
    except ValueError as err:
        refused = str(err)
    torch.save({{"world": tuple(world), "group": torch.distributed.is_initialized(), "state": state,
                "history": list(history), "metrics": metrics, "logits": logits, "labels": labels,
                "features": features, "again": again, "seen": seen, "writes": writes, "refused": refused}},
               out / f"rank{{world.rank}}.pt")
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The worker run by one plain process and by two under torchrun: ``(one, [rank0, rank1])``."""
    tmp = tmp_path_factory.mktemp("ddp")
    single = run_script(tmp, WORKER, "one", processes=None)
    assert single.returncode == 0, single.stderr[-3000:]
    double = run_script(tmp, WORKER, "two", processes=2)
    assert double.returncode == 0, double.stderr[-3000:]
    load = lambda name: torch.load(tmp / name, weights_only=False)  # noqa: E731
    return load("one/rank0.pt"), [load("two/rank0.pt"), load("two/rank1.pt")], tmp


def test_one_process_without_a_launcher_makes_no_group(runs):
    one, _, _ = runs
    assert one["world"] == (0, 1, 0) and not one["group"]
    assert distributed.world() == distributed.World(0, 1, 0) and not distributed.active()
    assert distributed.setup() == distributed.World() and not torch.distributed.is_initialized()


def test_two_processes_end_with_one_processs_weights(runs):
    one, ranks, _ = runs
    assert [r["world"][:2] for r in ranks] == [(0, 2), (1, 2)] and all(r["group"] for r in ranks)
    for key, weight in one["state"].items():
        assert torch.equal(ranks[0]["state"][key], ranks[1]["state"][key]), f"{key} differs between the processes"
        assert torch.allclose(ranks[0]["state"][key], weight, atol=1e-4, rtol=0), f"{key} differs from one process's"


def test_every_process_returns_one_processs_history_and_metrics(runs):
    one, ranks, _ = runs
    assert ranks[0]["history"] == ranks[1]["history"], "the History must be the same on every process (seconds too)"
    assert ranks[0]["metrics"] == ranks[1]["metrics"]
    for mine, theirs in zip(ranks[0]["history"], one["history"]):
        assert mine["epoch"] == theirs["epoch"] and mine["lr"] == theirs["lr"]
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            assert mine[key] == pytest.approx(theirs[key], abs=1e-5), key
    assert ranks[0]["metrics"]["n"] == one["metrics"]["n"] == 41  # every item once, none repeated
    assert ranks[0]["metrics"]["loss"] == pytest.approx(one["metrics"]["loss"], abs=1e-5)
    assert ranks[0]["metrics"]["accuracy"] == pytest.approx(one["metrics"]["accuracy"], abs=1e-6)


def test_predict_and_features_come_back_whole_and_in_order(runs):
    one, ranks, _ = runs
    for rank in ranks:
        assert torch.equal(rank["labels"], one["labels"]) and rank["logits"].shape == one["logits"].shape
        assert torch.allclose(rank["logits"], one["logits"], atol=1e-4)
        assert torch.equal(rank["again"], rank["features"]) and torch.allclose(rank["features"], one["features"], atol=1e-4)
    assert torch.equal(ranks[0]["logits"], ranks[1]["logits"])


def test_each_process_reads_its_part_of_each_global_batch(runs):
    one, ranks, _ = runs
    seen = [r["seen"] for r in ranks]
    assert len(one["seen"]) == EPOCHS * N_ITEMS
    assert [len(s) for s in seen] == [EPOCHS * 34, EPOCHS * 33]  # 4 x 8 + 2 and 4 x 8 + 1 items per epoch
    per_batch = [BATCH // 2] * (N_ITEMS // BATCH)
    rebuilt, where = [], [0, 0]
    for _ in range(EPOCHS):  # the two parts of each global batch, side by side, are one process's batch
        for parts in [*zip(per_batch, per_batch), (2, 1)]:
            for rank, count in enumerate(parts):
                rebuilt += seen[rank][where[rank]:where[rank] + count]
                where[rank] += count
    assert rebuilt == one["seen"]
    for epoch in range(EPOCHS):
        mine = [set(s[epoch * len(s) // EPOCHS:(epoch + 1) * len(s) // EPOCHS]) for s in seen]
        assert not mine[0] & mine[1] and len(mine[0] | mine[1]) == N_ITEMS


def test_only_rank_0_writes_and_the_others_find_its_files(runs):
    one, ranks, tmp = runs
    kinds = lambda names: sorted(name.split("-")[1] if name.startswith("xl-") else name for name in names)  # noqa: E731
    assert kinds(ranks[0]["writes"]) == kinds(one["writes"]) == ["features", "model.pt"]  # the cache entry once
    assert ranks[1]["writes"] == []
    saved = xl.load_checkpoint(tmp / "two" / "model.pt")
    assert saved["meta"] == {"epoch": EPOCHS} and torch.equal(saved["model"]["0.weight"], ranks[0]["state"]["0.weight"])


def test_a_batch_that_does_not_split_evenly_is_refused_on_every_process(runs):
    one, ranks, _ = runs
    assert one["refused"] is None  # one process: any batch size
    for rank in ranks:
        assert "batch_size=15" in rank["refused"] and "multiple of 2" in rank["refused"] and "14 or 16" in rank["refused"]


FAILING = """
    import sys, time
    import torch
    from torch import nn
    import xferlib as xl
    from xferlib import distributed

    world = distributed.setup()
    how = sys.argv[1]

    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return 64
        def __getitem__(self, i):
            if world.rank == 1 and how == "raise" and i % 2:
                raise RuntimeError("rank 1 fails on purpose")
            return torch.ones(2) * (i % 3), i % 3

    if world.rank == 1 and how == "stall":
        time.sleep(300)  # neither dies nor answers
    xl.fit(nn.Linear(2, 3), Data(), epochs=200, batch_size=8, progress=False)
"""


@pytest.mark.parametrize("how, says, timeout_s", [("raise", "fails on purpose", 300), ("stall", "Timed out", 4)])
def test_a_process_that_fails_or_stalls_ends_the_run(tmp_path, how, says, timeout_s):
    """A process that raises ends the run at once: torchrun stops the others, long before their
    timeout (300 s here). One that stalls makes the others' next collective time out (4 s here),
    which ends the run too."""
    start = time.perf_counter()
    proc = run_script(tmp_path, FAILING, how, timeout_s=timeout_s, limit_s=120)
    elapsed = time.perf_counter() - start
    assert proc.returncode != 0 and says in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]
    assert elapsed < 60, f"the run took {elapsed:.0f} s to stop"


# --------------------------------------------------------------------------- in one process
def test_split_is_contiguous_and_as_even_as_it_can_be():
    assert distributed.split(7, 2) == [4, 3] and distributed.split(3, 4) == [1, 1, 1, 0] and distributed.split(8, 2) == [4, 4]


def test_the_parts_of_each_global_batch_are_one_processs_batches():
    """Rank by rank, the parts add up to what DataLoader(shuffle=True) gives one process, epoch after
    epoch, and the weights make the averaged mean loss the global batch's mean."""
    single = torch.utils.data.DataLoader(range(19), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(5))
    samplers = [distributed.GlobalBatchSampler(19, 8, rank=r, world_size=4, generator=torch.Generator().manual_seed(5))
                for r in range(4)]
    for _ in range(3):  # the generator moves on between epochs as DataLoader's does
        # a DataLoader draws one number from its generator per epoch before the sampler: do the same here
        for s in samplers:
            torch.empty((), dtype=torch.int64).random_(generator=s.global_batches.sampler.generator)
        expected = [batch.tolist() for batch in single]
        parts = list(zip(*[list(s) for s in samplers]))
        assert len(parts) == len(expected) == len(samplers[0]) == 3
        for step, (batch, ranked) in enumerate(zip(expected, parts)):
            shares = [s.share(step) for s in samplers]
            counted = [p[:count] for p, (count, _) in zip(ranked, shares)]
            assert sum(counted, []) == batch
            assert sum(weight for _, weight in shares) == pytest.approx(4.0)  # mean of the weighted parts = global mean
    assert [s.share(0) for s in samplers] == [(2, 1.0)] * 4
    assert [s.share(2) for s in samplers] == [(1, 4 / 3)] * 3 + [(0, 0.0)]  # the last batch: 3 items, 4 processes
    assert list(samplers[3])[2] != []  # an empty part still runs one item (weight 0): every process must step


def test_a_global_batch_must_divide_among_the_processes():
    with pytest.raises(ValueError, match=r"batch_size=15 .* multiple of 4: use 12 or 16"):
        distributed.GlobalBatchSampler(40, 15, rank=0, world_size=4, generator=torch.Generator())
    with pytest.raises(ValueError, match="multiple of 4: use 4\\."):
        distributed.check_batch_size(3, 4)
    with pytest.raises(ValueError, match="seeded generator"):
        distributed.GlobalBatchSampler(40, 8, rank=0, world_size=2)
    distributed.check_batch_size(15, 1)  # one process: anything goes


def test_make_loader_gives_a_process_its_share():
    data = torch.utils.data.TensorDataset(torch.arange(10.0)[:, None], torch.arange(10))
    loader = xl.training.make_loader(data, 4, torch.device("cpu"), world=distributed.World(1, 2, 1))
    assert [y.tolist() for _, y in loader] == [[2, 3], [6, 7], [9]]
    plain = xl.training.make_loader(data, 4, torch.device("cpu"), world=distributed.World())
    assert [y.tolist() for _, y in plain] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_helpers_do_nothing_in_a_single_process(tmp_path):
    assert distributed.all_reduce_sum([1, 2.5]) == [1.0, 2.5] and distributed.all_true(True)
    assert distributed.broadcast_object({"a": 1}) == {"a": 1} and distributed.shared_seed(None) is None
    assert distributed.on_main(lambda x: x + 1, 1) == 2 and distributed.is_main()
    with distributed.main_first():
        distributed.barrier()
    model = nn.Linear(2, 3)
    assert distributed.wrap(model, torch.device("cpu")) is model and distributed.unwrap(model) is model
    bn = distributed.sync_batchnorm(nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4)))
    assert isinstance(bn[1], nn.SyncBatchNorm)
    bn.eval()
    assert bn(torch.randn(3, 2)).shape == (3, 4)


def test_a_bad_timeout_is_named(monkeypatch):
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "soon")
    with pytest.raises(ValueError, match="XFERLIB_DIST_TIMEOUT"):
        distributed.timeout_seconds()
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "30")
    assert distributed.timeout_seconds() == 30.0


# --------------------------------------------------------------------------- the recipes in docs/SCALING.md
GUIDE = (REPO / "docs" / "SCALING.md").read_text()


def _block(language: str, containing: str) -> str:
    blocks = [b.split("\n", 1)[1] for b in GUIDE.split("```")[1::2] if b.startswith(language + "\n")]
    return next(b for b in blocks if containing in b)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_the_guide_names_real_settings():
    for name in ("setup", "world", "is_main", "on_main", "main_first", "sync_batchnorm", "barrier"):
        assert callable(getattr(distributed, name)), name
    assert distributed.TIMEOUT_ENV in GUIDE and str(int(distributed.DEFAULT_TIMEOUT_S)) in GUIDE
    assert "torchrun --standalone --nproc_per_node=2" in (REPO / "README.md").read_text()


@pytest.mark.slow
def test_the_several_machines_command_meets_through_the_rendezvous(tmp_path):
    """The guide's command, run as two one-process 'machines' on this one, trains the guide's script."""
    (tmp_path / "train.py").write_text(_block("python", "import xferlib"))
    command = _block("bash", "--rdzv_endpoint=node0").replace("\\\n", " ").split()
    assert command[0] == "torchrun"
    command = [sys.executable, "-m", "torch.distributed.run",
               *[a.replace("node0.example.org:29500", f"localhost:{_free_port()}").replace("--nproc_per_node=4", "--nproc_per_node=1")
                 for a in command[1:]]]
    env = _env(tmp_path, 120)
    machines = [subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(2)]
    outputs = [m.communicate(timeout=300) for m in machines]
    for machine, (out, err) in zip(machines, outputs):
        assert machine.returncode == 0, err[-3000:]
    printed = "".join(out for out, _ in outputs)
    assert printed.count("train_loss") == 1 and f"'n': {len(xl.data.digits('test'))}" in printed  # once, by rank 0; all of it
    assert xl.load_checkpoint(tmp_path / "digits.pt")["model"]


@pytest.mark.slow
def test_the_slurm_script_runs_with_stand_ins_for_slurm(tmp_path):
    """The guide's sbatch script on one node: srun runs its command, scontrol names this host."""
    (tmp_path / "train.py").write_text(_block("python", "import xferlib"))
    (tmp_path / "job.sh").write_text(_block("bash", "#SBATCH").replace("29500", str(_free_port())))
    shims = tmp_path / "bin"
    shims.mkdir()
    for name, body in (("srun", 'exec "$@"'), ("scontrol", "echo localhost")):
        (shims / name).write_text(f"#!/bin/sh\n{body}\n")
        (shims / name).chmod(0o755)
    env = _env(tmp_path, 120)
    env.update(PATH=os.pathsep.join([str(shims), str(Path(sys.executable).parent), env["PATH"]]), SLURM_JOB_NODELIST="localhost",
               SLURM_NNODES="1", SLURM_JOB_ID="4242", SLURM_CPUS_PER_TASK="2", PROCS_PER_NODE="2")
    proc = subprocess.run(["bash", "job.sh"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("train_loss") == 1 and (tmp_path / "digits.pt").is_file()
