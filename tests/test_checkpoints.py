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
