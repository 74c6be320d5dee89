"""xl.costs.training_memory on models whose answers are known by hand (lesson 10 reads it for
full fine-tuning, LoRA and the rest; lesson 14 builds on it)."""

import copy

import pytest
import torch
from torch import nn

import xferlib as xl

BATCH, IN, HIDDEN, OUT = 4, 5, 8, 3


def _x():
    return torch.randn(BATCH, IN, generator=torch.Generator().manual_seed(0))


def test_a_linear_layer_saves_its_input_and_has_a_gradient_per_weight():
    torch.manual_seed(0)
    layer = nn.Linear(IN, OUT)
    mem = xl.costs.training_memory(layer, _x())
    weights = IN * OUT + OUT
    assert mem["trainable"] == weights
    assert mem["parameters"] == weights * 4
    assert mem["gradients"] == weights * 4
    assert mem["optimizer"] == 2 * weights * 4  # AdamW: two running averages per weight
    assert mem["activations"] == BATCH * IN * 4  # the input, kept to compute the weight's gradient
    assert mem["total"] == mem["parameters"] + mem["gradients"] + mem["optimizer"] + mem["activations"]


def test_weights_that_an_op_saves_are_not_counted_as_activations():
    """With an input that needs a gradient, the linear layer also saves its weight (for the
    input's gradient): that is a parameter, already counted, not an activation."""
    layer = nn.Linear(IN, OUT)
    x = _x().requires_grad_(True)
    assert xl.costs.training_memory(layer, x)["activations"] == BATCH * IN * 4


def test_a_frozen_model_reports_no_gradients_no_optimizer_state_and_no_activations():
    model = xl.freeze(nn.Sequential(nn.Linear(IN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, OUT)))
    mem = xl.costs.training_memory(model, _x())
    assert mem["gradients"] == mem["optimizer"] == mem["activations"] == mem["trainable"] == 0
    assert mem["parameters"] == ((IN + 1) * HIDDEN + (HIDDEN + 1) * OUT) * 4


def test_a_frozen_first_layer_keeps_nothing_for_the_backward_pass():
    """Only the last layer trains: autograd keeps its input (the ReLU's output), and nothing of
    the frozen layer below, whose weights need no gradient and whose input needs none."""
    model = nn.Sequential(nn.Linear(IN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, OUT))
    xl.freeze(model[0])
    mem = xl.costs.training_memory(model, _x())
    assert mem["trainable"] == (HIDDEN + 1) * OUT
    assert mem["gradients"] == (HIDDEN + 1) * OUT * 4
    assert mem["activations"] == BATCH * HIDDEN * 4


def test_targets_add_what_the_loss_saves():
    layer = nn.Linear(IN, OUT)
    y = torch.tensor([0, 1, 2, 0])
    with_loss = xl.costs.training_memory(layer, _x(), y)["activations"]
    # the input, the log-probabilities (B x C floats) and the targets (B int64), plus at most a
    # few scalars (the negative log-likelihood keeps its total weight)
    expected = BATCH * IN * 4 + BATCH * OUT * 4 + BATCH * 8
    assert expected <= with_loss <= expected + 16


def test_the_model_comes_back_as_it_was():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(IN, HIDDEN), nn.Dropout(0.5), nn.Linear(HIDDEN, OUT)).eval()
    before = copy.deepcopy(model.state_dict())
    model[0].weight.grad = torch.ones_like(model[0].weight)
    rng = torch.get_rng_state()
    xl.costs.training_memory(model, _x())
    assert not model.training and not model[1].training, "modes restored"
    assert torch.equal(model[0].weight.grad, torch.ones_like(model[0].weight)), "old gradients restored"
    assert model[2].weight.grad is None
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert torch.equal(torch.get_rng_state(), rng), "dropout's random draws do not move the global generator"


def test_only_the_trainable_part_of_a_real_backbone_has_gradients(lite0):
    model = xl.build_classifier(copy.deepcopy(lite0), 3)
    xl.freeze(model.backbone)
    x = torch.randn(2, 3, 64, 64)
    head_only = xl.costs.training_memory(model, x)
    assert head_only["gradients"] == (1280 * 3 + 3) * 4
    assert head_only["activations"] == 2 * 1280 * 4  # the pooled features, the head's input
    for p in model.backbone.parameters():
        p.requires_grad_(True)
    full = xl.costs.training_memory(model, x)
    assert full["gradients"] == full["parameters"]
    assert full["activations"] > 100 * head_only["activations"]
    assert xl.freezing.is_pinned(next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d)))


@pytest.mark.parametrize("tensors, expected", [([], 0), ([torch.zeros(3, 2)], 24), ([torch.zeros(2, dtype=torch.int64), torch.zeros(4, dtype=torch.float16)], 24)])
def test_tensor_bytes(tensors, expected):
    assert xl.costs.tensor_bytes(tensors) == expected


def test_release_memory_gives_freed_memory_back():
    import sys

    def rss_mib():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20

    chunks = [bytearray(64 * 1024) for _ in range(4000)]  # 250 MiB in heap blocks (below the mmap threshold)
    kept = chunks[::16]  # a few blocks stay alive, so the heap cannot simply shrink from its top
    del chunks
    before = rss_mib() if sys.platform == "linux" else None
    trimmed = xl.release_memory()
    if sys.platform == "linux" and trimmed:
        assert rss_mib() < before - 100, "the freed heap blocks went back to the system"
    assert isinstance(trimmed, bool) and len(kept) == 250


def test_nothing_of_the_model_outlives_the_measurement():
    """A branch that the loss never reaches (BERT's attention masks have some) keeps its saved
    output; packed as the tensor itself, that output would point back at its own graph node, a
    cycle that kept the graph and the model's weights alive after the measurement."""
    import gc
    import weakref

    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.first, self.last = nn.Linear(IN, HIDDEN), nn.Linear(HIDDEN, OUT)

        def forward(self, x):
            h = self.first(x)
            torch.exp(h)  # computed and dropped: backward never runs its node
            return self.last(h)

    model = Branchy()
    weight = weakref.ref(model.first.weight)
    xl.costs.training_memory(model, _x())
    del model
    gc.collect()
    assert weight() is None, "the measured model's weights must be freed with it"


def test_saved_tensors_are_what_a_task_keeps_and_are_counted_on_disk(tmp_path):
    """``save_tensors`` writes detached CPU copies that load back equal; ``saved_bytes`` measures what a
    save writes in a folder that is removed afterwards; ``folder_bytes`` adds up nested files."""
    from safetensors.torch import load_file

    weight = torch.randn(8, 4, requires_grad=True)
    path = xl.costs.save_tensors({"w": weight * 1, "b": torch.zeros(3)}, tmp_path / "task" / "a.safetensors")
    loaded = load_file(str(path))
    assert torch.equal(loaded["w"], weight.detach()) and loaded["b"].shape == (3,)
    assert not [p for p in path.parent.iterdir() if p != path], "no temporary file is left beside it"

    (tmp_path / "task" / "deep").mkdir()
    (tmp_path / "task" / "deep" / "x.bin").write_bytes(b"0" * 100)
    assert xl.costs.folder_bytes(tmp_path / "task") == path.stat().st_size + 100

    seen = []

    def save(folder):
        seen.append(folder)
        xl.costs.save_tensors({"w": weight}, folder / "task.safetensors")

    small, large = xl.costs.saved_bytes(save), xl.costs.saved_bytes(lambda f: xl.costs.save_tensors({"w": torch.randn(80, 40)}, f / "t.safetensors"))
    assert 8 * 4 * 4 < small < 8 * 4 * 4 + 1024 and abs(large - small - (80 * 40 - 8 * 4) * 4) < 64  # headers differ by a few bytes
    assert not seen[0].exists(), "the temporary folder is removed"


# --------------------------------------------------------------------------- flops (lesson 14)
def test_a_linear_layer_costs_two_flops_per_multiply_add_forward_and_its_weight_gradient_as_much_again():
    layer = nn.Linear(IN, OUT)
    forward = 2 * BATCH * IN * OUT  # the bias add is not counted: only the matrix product
    assert xl.costs.flops(layer, _x()) == {"forward": forward, "backward": 0, "total": forward}
    step = xl.costs.flops(layer, _x(), backward=True)
    assert step == {"forward": forward, "backward": forward, "total": 2 * forward}  # grad W = grad_out^T x; x needs none


def test_an_input_that_needs_a_gradient_adds_the_input_gradient():
    layer = nn.Linear(IN, OUT)
    x = _x().requires_grad_(True)
    assert xl.costs.flops(layer, x, backward=True)["backward"] == 2 * (2 * BATCH * IN * OUT)  # grad W and grad x


def test_a_frozen_layer_costs_only_its_forward_pass():
    layer = xl.freeze(nn.Linear(IN, OUT))
    assert xl.costs.flops(layer, _x(), backward=True) == {"forward": 2 * BATCH * IN * OUT, "backward": 0, "total": 2 * BATCH * IN * OUT}
    x = _x().requires_grad_(True)  # a layer above that trains would need the gradient of its input
    assert xl.costs.flops(layer, x, backward=True)["backward"] == 2 * BATCH * IN * OUT  # grad x only, no grad W


def test_the_backward_pass_stops_at_the_first_trainable_layer():
    """Two layers: training only the last one costs its weight gradient; training both adds the
    last layer's input gradient (to reach the first layer) and the first layer's weight gradient."""
    model = nn.Sequential(nn.Linear(IN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, OUT))
    forward = 2 * BATCH * (IN * HIDDEN + HIDDEN * OUT)
    full = xl.costs.flops(model, _x(), backward=True)
    assert full["forward"] == forward
    assert full["backward"] == 2 * BATCH * HIDDEN * OUT * 2 + 2 * BATCH * IN * HIDDEN
    xl.freeze(model[0])
    last = xl.costs.flops(model, _x(), backward=True)
    assert last == {"forward": forward, "backward": 2 * BATCH * HIDDEN * OUT, "total": forward + 2 * BATCH * HIDDEN * OUT}


def test_a_convolution_is_counted_by_hand():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    x = torch.randn(2, 3, 6, 6)
    forward = 2 * 2 * 8 * 6 * 6 * 3 * 3 * 3  # 2 x batch x out-channels x positions x (in-channels x kernel)
    assert xl.costs.flops(conv, x)["forward"] == forward
    assert xl.costs.flops(conv, x, backward=True)["backward"] == forward  # the weight gradient only
    assert xl.costs.flops(conv, x.requires_grad_(True), backward=True)["backward"] == 2 * forward


@pytest.mark.parametrize("groups, stride", [(8, 1), (4, 2)])
def test_a_grouped_convolution_s_weight_gradient_is_counted_per_group(groups, stride):
    """A depthwise convolution (groups = channels) does 1/groups of a dense one's work, forward
    and backward; PyTorch's own formula counted its weight gradient as dense."""
    conv = nn.Conv2d(8, 16, 3, stride=stride, padding=1, groups=groups)
    x = torch.randn(2, 8, 7, 7)
    side = 7 if stride == 1 else 4
    forward = 2 * 2 * 16 * side * side * (8 // groups) * 3 * 3
    assert xl.costs.flops(conv, x, backward=True) == {"forward": forward, "backward": forward, "total": 2 * forward}
    assert xl.costs.flops(conv, x.requires_grad_(True), backward=True)["backward"] == 2 * forward


def test_counting_flops_leaves_the_model_as_it_was():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(IN, HIDDEN), nn.BatchNorm1d(HIDDEN), nn.Dropout(0.5), nn.Linear(HIDDEN, OUT)).eval()
    before = copy.deepcopy(model.state_dict())
    model[0].weight.grad = torch.ones_like(model[0].weight)
    rng = torch.get_rng_state()
    y = torch.tensor([0, 1, 2, 0])
    step = xl.costs.flops(model, _x(), y, backward=True)
    assert step["backward"] > 0 and step["total"] == step["forward"] + step["backward"]
    assert not any(m.training for m in model.modules()), "modes restored"
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items()), "BatchNorm statistics put back"
    assert torch.equal(model[0].weight.grad, torch.ones_like(model[0].weight)) and model[3].weight.grad is None
    assert torch.equal(torch.get_rng_state(), rng)
    with torch.no_grad():
        xl.costs.flops(model, _x())  # forward only: works inside no_grad and inference code too


def test_freezing_the_backbone_removes_its_backward_flops(lite0):
    model = xl.build_classifier(copy.deepcopy(lite0), 3)
    x, y = torch.randn(2, 3, 64, 64), torch.tensor([0, 1])
    xl.freeze(model.backbone)
    head_only = xl.costs.flops(model, x, y, backward=True)
    assert head_only["backward"] == 2 * 2 * 1280 * 3  # the head's weight gradient, nothing else
    for p in model.backbone.parameters():
        p.requires_grad_(True)
    full = xl.costs.flops(model, x, y, backward=True)
    assert full["forward"] == head_only["forward"]
    assert 1.5 * full["forward"] < full["backward"] < 2.5 * full["forward"]  # about twice the forward pass
