import pytest
import torch
from torch import nn

import xferlib as xl


def test_round_trip_with_optimizer_and_metadata(tmp_path):
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    path = xl.save_checkpoint(tmp_path / "run" / "model.pt", model, opt, epoch=3, note="after warm-up")
    assert path.exists() and not list(path.parent.glob("*.tmp"))
    fresh, fresh_opt = nn.Linear(4, 2), torch.optim.SGD(nn.Linear(4, 2).parameters(), lr=0.1, momentum=0.9)
    payload = xl.load_checkpoint(path, fresh, fresh_opt)
    assert torch.equal(fresh.weight, model.weight)
    assert payload["meta"] == {"epoch": 3, "note": "after warm-up"}
    assert fresh_opt.state_dict()["state"]


def test_missing_corrupt_and_mismatched_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        xl.load_checkpoint(tmp_path / "nothing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00\x01 not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt"):
        xl.load_checkpoint(bad)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ValueError, match="not an xferlib checkpoint"):
        xl.load_checkpoint(other)
    good = xl.save_checkpoint(tmp_path / "good.pt", nn.Linear(4, 2))
    with pytest.raises(ValueError, match="does not fit"):
        xl.load_checkpoint(good, nn.Linear(5, 2))


def test_checkpoints_refuse_to_run_code(tmp_path):
    """weights_only=True: a pickle that would call a function is rejected."""
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"model": Evil()}, path)
    with pytest.raises(ValueError, match="evil.pt"):
        xl.load_checkpoint(path)


def test_failed_save_leaves_nothing_half_written(tmp_path, monkeypatch):
    target = tmp_path / "model.pt"
    xl.save_checkpoint(target, nn.Linear(2, 2))
    original = target.read_bytes()

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        xl.save_checkpoint(target, nn.Linear(2, 2))
    assert target.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_metadata_that_would_not_load_is_refused_at_save_time(tmp_path):
    import numpy as np
    from pathlib import Path

    model = nn.Linear(2, 2)
    path = xl.save_checkpoint(tmp_path / "m.pt", model, accuracy=np.float64(0.875), epochs=np.int64(3),
                              history=[{"loss": np.float32(0.5)}], mask=torch.ones(2))
    meta = xl.load_checkpoint(path)["meta"]  # weights_only=True
    assert meta["accuracy"] == 0.875 and type(meta["accuracy"]) is float and type(meta["epochs"]) is int
    assert meta["history"] == [{"loss": 0.5}] and torch.equal(meta["mask"], torch.ones(2))
    with pytest.raises(TypeError, match=r"'data_dir'.*PosixPath.*str\(path\)"):
        xl.save_checkpoint(tmp_path / "p.pt", model, data_dir=Path("/data"))
    with pytest.raises(TypeError, match=r"'config'\['model'\].*Linear"):
        xl.save_checkpoint(tmp_path / "q.pt", model, config={"model": nn.Linear(1, 1)})
    assert not (tmp_path / "p.pt").exists() and not (tmp_path / "q.pt").exists()


def test_a_truncated_checkpoint_says_so(tmp_path):
    good = xl.save_checkpoint(tmp_path / "good.pt", nn.Linear(64, 64))
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"cut\.pt \(\d+ bytes\) is truncated or not a checkpoint") as info:
        xl.load_checkpoint(cut)
    assert "Errno" not in str(info.value)
