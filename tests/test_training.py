import pytest
import torch
from torch import nn

import xferlib as xl


def blobs(n=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    centers = torch.tensor([[3.0, 0.0], [-3.0, 0.0], [0.0, 3.0]])
    x = centers[y] + torch.randn(n, 2, generator=g)
    return torch.utils.data.TensorDataset(x, y)


def test_fit_learns_and_reports_every_epoch():
    model = nn.Linear(2, 3)
    history = xl.fit(model, blobs(), blobs(seed=1), epochs=15, lr=0.1, batch_size=16, progress=False, seed=0)
    assert len(history) == 15 and history["epoch"] == list(range(1, 16))
    assert history[-1]["val_accuracy"] > 0.9
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history.best["val_loss"] == min(history["val_loss"])
    assert history.seconds > 0
    frame = history.to_frame()
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"} <= set(frame.columns)


def test_fit_with_the_same_seed_is_repeatable():
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 3))
        runs.append(xl.fit(model, blobs(), epochs=3, lr=0.05, batch_size=8, seed=7, progress=False)["train_loss"])
    assert runs[0] == runs[1]


def test_early_stopping_stops_and_restores_the_best_weights():
    torch.manual_seed(0)
    train = blobs(12)
    g = torch.Generator().manual_seed(5)
    noisy_val = torch.utils.data.TensorDataset(torch.randn(60, 2, generator=g) * 4, torch.randint(0, 3, (60,), generator=g))
    model = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 3))
    history = xl.fit(model, train, noisy_val, epochs=60, lr=0.05, early_stopping=3, progress=False, seed=0)
    assert len(history) < 60
    best = history.best["val_loss"]
    assert xl.evaluate(model, noisy_val)["loss"] == pytest.approx(best, rel=1e-4)


def test_early_stopping_needs_validation_data():
    with pytest.raises(ValueError, match="val"):
        xl.fit(nn.Linear(2, 3), blobs(), epochs=2, early_stopping=2)


def test_everything_frozen_is_a_clear_error():
    model = xl.freeze(nn.Linear(2, 3))
    with pytest.raises(ValueError, match="no trainable parameters"):
        xl.fit(model, blobs(), epochs=1)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="optimizer"):
        xl.fit(nn.Linear(2, 3), blobs(), epochs=1, optimizer="rmsprop-ish")
    with pytest.raises(ValueError, match="scheduler"):
        xl.fit(nn.Linear(2, 3), blobs(), epochs=1, scheduler="sometimes")
    with pytest.raises(TypeError, match="Dataset"):
        xl.fit(nn.Linear(2, 3), [1, 2, 3], epochs=1)


def test_cosine_schedule_lowers_the_learning_rate():
    history = xl.fit(nn.Linear(2, 3), blobs(), epochs=4, lr=0.1, scheduler="cosine", progress=False)
    lrs = history["lr"]
    assert lrs[0] > lrs[-1] and lrs == sorted(lrs, reverse=True)


def test_param_groups_head_body_and_discriminative():
    model = xl.build_classifier(xl.load_backbone(pretrained=False, image_size=32), 4)
    groups = xl.param_groups(model, lr=1e-2, body_lr=1e-3)
    assert [g["name"] for g in groups] == ["head", "backbone"]
    assert [g["lr"] for g in groups] == [1e-2, 1e-3]
    staged = xl.param_groups(model, lr=1e-2, body_lr=1e-3, stage_decay=0.5)
    names = [g["name"] for g in staged]
    assert names == ["head", "top"] + [f"block{i}" for i in range(7, 0, -1)] + ["stem"]
    body = staged[1:]
    assert body[0]["lr"] == 1e-3 and body[1]["lr"] == 5e-4 and body[-1]["name"] == "stem"
    assert sum(len(g["params"]) for g in staged) == len(list(model.parameters()))
    xl.freeze_stages(model, 9)
    assert [g["name"] for g in xl.param_groups(model, 1e-2, 1e-3)] == ["head"]


def test_fit_trains_a_conv_net_in_channels_last(tiny_images):
    model = xl.build_classifier(xl.load_backbone(pretrained=False, image_size=32), 3)
    data = tiny_images.with_transform(xl.eval_transform("efficientnet_lite0", 32))
    history = xl.fit(model, data, epochs=1, lr=1e-3, batch_size=8, progress=False)
    assert len(history) == 1
    conv = model.backbone.stages[0][0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)


def test_evaluate_and_predict():
    model = nn.Linear(2, 3)
    data = blobs()
    metrics = xl.evaluate(model, data)
    logits, labels = xl.predict(model, data)
    assert metrics["n"] == 60 and logits.shape == (60, 3) and torch.equal(labels, data.tensors[1])
    assert metrics["accuracy"] == pytest.approx((logits.argmax(1) == labels).float().mean().item())
    assert metrics["loss"] == pytest.approx(nn.functional.cross_entropy(logits, labels).item(), rel=1e-5)


def test_predict_restores_training_mode():
    model = nn.Sequential(nn.Linear(2, 3), nn.Dropout(0.5))
    model.train()
    xl.predict(model, blobs())
    assert model.training


def test_predict_gives_each_submodule_its_own_mode_back():
    """A body held in eval mode inside a model in train mode stays that way (not all-train)."""
    model = nn.Sequential(nn.Linear(2, 3), nn.Dropout(0.5))
    model.train()
    model[1].eval()
    xl.predict(model, blobs())
    assert model.training and model[0].training and not model[1].training
    model.eval()
    model[1].train()
    xl.evaluate(model, blobs())
    assert not model.training and model[1].training


def test_build_classifier_checks_its_input():
    with pytest.raises(ValueError, match="num_classes"):
        xl.build_classifier(xl.load_backbone(pretrained=False), 1)
    with pytest.raises(TypeError, match="num_features"):
        xl.build_classifier(nn.Linear(2, 2), 3)


def test_accuracy_spread_text():
    assert xl.accuracy_spread([0.5, 0.7]) == "0.600 ± 0.141"


# --------------------------------------------------------------------------- bad input stops early
def test_a_loss_that_turns_nan_stops_with_the_epoch_and_batch():
    x, y = blobs().tensors
    x = x.clone()
    x[45] = float("nan")  # one bad input: sample 45 is in some batch of epoch 1
    model = nn.Linear(2, 3)
    with pytest.raises(xl.training.TrainingDiverged, match=r"epoch 1, batch \d+ of 4.*lower learning rate.*NaN"):
        xl.fit(model, (x, y), epochs=2, batch_size=16, progress=False, seed=0)
    assert torch.isfinite(model.weight).all(), "the step with the NaN loss must not have been taken"


def test_a_learning_rate_that_explodes_is_caught():
    model = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 3))
    with pytest.raises(FloatingPointError, match="epoch"):
        xl.fit(model, blobs(), epochs=30, lr=1e12, optimizer="sgd", progress=False, seed=0)


@pytest.mark.parametrize(
    "labels, message",
    [
        (torch.tensor([0, 1, 2, 5] * 15), r"label\(s\) \[5\].*3 outputs.*0\.\.2"),
        (torch.tensor([0, 1, -1, 2] * 15), r"label\(s\) \[-1\]"),
        (torch.tensor([0.0, 1.0, 2.0, 1.5] * 15), r"float32.*whole-number"),
    ],
)
def test_labels_the_head_cannot_use_are_named_before_training(labels, message):
    x = torch.randn(60, 2)
    model = nn.Linear(2, 3)
    before = model.weight.detach().clone()
    with pytest.raises(ValueError, match=message):
        xl.fit(model, (x, labels), epochs=1, batch_size=16, progress=False)
    assert torch.equal(model.weight, before), "no step may be taken with bad labels"


def test_a_custom_loss_may_take_float_targets():
    x = torch.randn(32, 2)
    target = torch.randn(32, 3)
    model = nn.Linear(2, 3)
    history = xl.fit(model, (x, target), epochs=2, loss_fn=nn.MSELoss(), progress=False)
    assert len(history) == 2 and history[-1]["train_loss"] > 0


def test_a_batchnorm_head_survives_a_last_batch_of_one():
    x, y = blobs(33).tensors  # 33 = 2 x 16 + 1
    model = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    history = xl.fit(model, (x, y), epochs=2, batch_size=16, progress=False, seed=0)
    assert len(history) == 2
    with pytest.raises(ValueError, match="One training example"):
        xl.fit(model, (x[:1], y[:1]), epochs=1, batch_size=16, progress=False)


def test_restore_best_without_early_stopping_and_its_default():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(5)
    noisy_val = torch.utils.data.TensorDataset(torch.randn(60, 2, generator=g) * 4, torch.randint(0, 3, (60,), generator=g))

    def run(**kwargs):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 3))
        history = xl.fit(model, blobs(12), noisy_val, epochs=25, lr=0.05, progress=False, seed=0, **kwargs)
        return history, xl.evaluate(model, noisy_val)["loss"]

    history, restored = run(restore_best=True)
    assert restored == pytest.approx(history.best["val_loss"], rel=1e-4)
    history, last = run()  # default: no early stopping, so the last epoch's weights stay
    assert last == pytest.approx(history[-1]["val_loss"], rel=1e-4) and last != pytest.approx(history.best["val_loss"])
    with pytest.raises(ValueError, match="restore_best needs validation"):
        xl.fit(nn.Linear(2, 3), blobs(), epochs=1, restore_best=True)


def test_the_validation_loss_is_the_training_loss_function():
    def scaled(out, y):
        return 10 * nn.functional.cross_entropy(out, y)

    model = nn.Linear(2, 3)
    history = xl.fit(model, blobs(), blobs(seed=1), epochs=1, loss_fn=scaled, progress=False)
    plain = xl.evaluate(model, blobs(seed=1))["loss"]
    assert history[-1]["val_loss"] == pytest.approx(10 * plain, rel=1e-5)
    assert xl.evaluate(model, blobs(seed=1), loss_fn=scaled)["loss"] == pytest.approx(10 * plain, rel=1e-5)


def test_fit_reads_as_named_steps():
    """The loop a learner reads: optimizer, scheduler, one epoch, evaluation, each usable alone."""
    model = nn.Linear(2, 3)
    opt = xl.training.make_optimizer(xl.param_groups(model, 0.1), "sgd", lr=0.1)
    loader = xl.training.make_loader(blobs(), 16, torch.device("cpu"), shuffle=True, seed=0)
    first = xl.training.train_one_epoch(model, loader, opt, nn.CrossEntropyLoss(), torch.device("cpu"))
    for _ in range(5):
        last = xl.training.train_one_epoch(model, loader, opt, nn.CrossEntropyLoss(), torch.device("cpu"))
    assert last["train_loss"] < first["train_loss"] and 0 <= last["train_accuracy"] <= 1


def test_monitor_val_accuracy_restores_the_most_accurate_epoch():
    g = torch.Generator().manual_seed(5)
    noisy_val = torch.utils.data.TensorDataset(torch.randn(60, 2, generator=g) * 4, torch.randint(0, 3, (60,), generator=g))

    def run(**kwargs):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 3))
        history = xl.fit(model, blobs(12), noisy_val, epochs=25, lr=0.05, progress=False, seed=0, restore_best=True, **kwargs)
        return history, xl.evaluate(model, noisy_val)

    by_loss, _ = run()
    history, restored = run(monitor="val_accuracy")
    best = max(history["val_accuracy"])
    assert history.best["val_accuracy"] == best and history.best["epoch"] == history["val_accuracy"].index(best) + 1
    assert restored["accuracy"] == pytest.approx(best)
    assert by_loss.best["epoch"] != history.best["epoch"]  # the two rules pick different epochs here
    with pytest.raises(ValueError, match="monitor must be"):
        xl.fit(nn.Linear(2, 3), blobs(), blobs(), epochs=1, monitor="accuracy")
