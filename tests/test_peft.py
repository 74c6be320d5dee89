"""Hugging Face PEFT on the course's two offline models, as lesson 10 uses it: LoRA on
EfficientNet-Lite0's pointwise (1x1) convolutions and on MiniLM's attention, IA3 on MiniLM.

Each adapter must wrap the right layers, train only itself, save as a small file that reloads to
the same outputs, swap with another adapter, and merge into the base weights without changing
what the model computes. EfficientNet-Lite0 is built with random weights and tiny inputs (the
weights do not matter here); MiniLM loads its shipped weights once per module.
"""

import copy

import pytest
import torch
from peft import IA3Config, LoraConfig, PeftModel, get_peft_model
from torch import nn

import xferlib as xl

LITE0_POINTWISE = ["conv_pw", "conv_pwl"]          # the 1x1 convolutions of every block (suffixes)
MINILM_ATTENTION = ["query", "value"]              # LoRA's classic choice (Hu et al. 2021)
MINILM_IA3 = r".*\.(key|value)$|.*\.layer\.\d+\.output\.dense$"  # key, value, and the second FFN layer
MINILM_IA3_FEEDFORWARD = r".*\.layer\.\d+\.output\.dense$"
SENTENCES = ["Simmer the sauce for ten minutes.", "The match went to extra time.", "Rain is expected tonight."]


# --------------------------------------------------------------------------- models


@pytest.fixture(scope="module")
def _minilm():
    return xl.text.load_text_encoder("cpu")


@pytest.fixture
def text_model(_minilm):
    torch.manual_seed(0)
    return xl.text.SentenceClassifier(copy.deepcopy(_minilm), 3).eval()


@pytest.fixture(scope="module")
def text_batch(_minilm):
    return _minilm.preprocess(SENTENCES)


@pytest.fixture
def image_model():
    """Lite0 with a 3-class head, its backbone frozen with xl.freeze (BatchNorm pinned to eval mode)."""
    torch.manual_seed(0)
    backbone = xl.freeze(xl.load_backbone("efficientnet_lite0", pretrained=False, image_size=32))
    return xl.build_classifier(backbone, 3).eval()


@pytest.fixture(scope="module")
def image_batch():
    return torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _lite0_lora(r=4, **kw):
    return LoraConfig(r=r, lora_alpha=2 * r, target_modules=LITE0_POINTWISE, modules_to_save=["head"], **kw)


def _minilm_lora(r=4, **kw):
    return LoraConfig(r=r, lora_alpha=2 * r, target_modules=MINILM_ATTENTION, modules_to_save=["head"], **kw)


CASES = {
    "lite0-lora": ("image_model", "image_batch", _lite0_lora),
    "minilm-lora": ("text_model", "text_batch", _minilm_lora),
}


@pytest.fixture(params=list(CASES))
def case(request):
    """(base model, a batch, the LoRA config maker) for each model."""
    model_name, batch_name, config = CASES[request.param]
    return request.getfixturevalue(model_name), request.getfixturevalue(batch_name), config


def _out(model, batch):
    with torch.no_grad():
        return model(batch)


def _train_step(model, batch, steps=1):
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(steps):
        n = batch.shape[0] if torch.is_tensor(batch) else batch["input_ids"].shape[0]
        loss = nn.functional.cross_entropy(model(batch), torch.arange(n) % 3)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _base_state(model):
    """Every tensor of the model that is not part of an adapter (or its copy of the head)."""
    skip = ("lora_", "ia3_", "modules_to_save")
    return {n: t.detach().clone() for n, t in model.state_dict().items() if not any(s in n for s in skip)}


def _size(folder):
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


# --------------------------------------------------------------------------- which layers
def test_lora_on_lite0_wraps_exactly_the_pointwise_convolutions(image_model):
    convs = {n: m for n, m in image_model.named_modules() if isinstance(m, nn.Conv2d)}
    pointwise = {n: m for n, m in convs.items() if n.rsplit(".", 1)[-1] in LITE0_POINTWISE}
    assert len(pointwise) == 31 and all(m.kernel_size == (1, 1) and m.groups == 1 for m in pointwise.values())
    model = get_peft_model(image_model, _lite0_lora(r=4))
    assert sorted(model.base_model.targeted_module_names) == sorted(pointwise)
    adapter = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n and p.requires_grad)
    assert adapter == sum(4 * (m.in_channels + m.out_channels) for m in pointwise.values()) == 84_736
    head = sum(p.numel() for n, p in model.named_parameters() if "modules_to_save" in n and p.requires_grad)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert head == 1280 * 3 + 3 and trainable == adapter + head


@pytest.mark.filterwarnings("ignore:LoRA adapter added to ConvNd layer with groups > 1")
def test_lora_refuses_lite0s_depthwise_convolutions(image_model):
    """A depthwise convolution (groups = channels) takes LoRA only when the rank is a multiple of
    its groups (32 to 1152 here): peft refuses it with a message, for any rank one would use."""
    for r in (4, 16):
        with pytest.raises(ValueError, match="groups"):
            get_peft_model(copy.deepcopy(image_model), LoraConfig(r=r, target_modules=["conv_dw"]))


def test_lora_on_minilm_attention_counts_and_starts_as_the_base(text_model, text_batch):
    before = _out(text_model, text_batch)
    model = get_peft_model(text_model, _minilm_lora(r=8))
    assert len(model.base_model.targeted_module_names) == 12  # query and value in 6 layers
    adapter = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n and p.requires_grad)
    assert adapter == 12 * 8 * (384 + 384)  # r * (d_in + d_out) per Linear
    assert torch.allclose(_out(model, text_batch), before, atol=1e-6), "LoRA's B starts at zero: no change yet"


def test_ia3_on_minilm_scales_key_value_and_the_feedforward_input(text_model, text_batch):
    before = _out(text_model, text_batch)
    model = get_peft_model(text_model, IA3Config(target_modules=MINILM_IA3, feedforward_modules=MINILM_IA3_FEEDFORWARD,
                                                 modules_to_save=["head"]))
    names = model.base_model.targeted_module_names
    assert len(names) == 18 and not any("attention.output" in n for n in names)
    ia3 = sum(p.numel() for n, p in model.named_parameters() if "ia3_l" in n and p.requires_grad)
    assert ia3 == 6 * (384 + 384 + 1536)  # one number per key and value output, per FFN hidden unit
    assert torch.allclose(_out(model, text_batch), before, atol=1e-6), "IA3's vectors start at one"


# --------------------------------------------------------------------------- training, saving, swapping, merging
def test_a_training_step_changes_only_the_adapter(case):
    base, batch, config = case
    model = get_peft_model(base, config())
    base_before = _base_state(model)
    adapter_before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    _train_step(model, batch)
    assert all(torch.equal(t, model.state_dict()[n]) for n, t in base_before.items())
    changed = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, adapter_before[n])]
    assert any("lora_B" in n for n in changed) and any("modules_to_save" in n for n in changed)


def test_without_freeze_batchnorm_statistics_drift_and_the_adapter_no_longer_reproduces(image_model, image_batch, tmp_path):
    """peft freezes parameters, not BatchNorm's running statistics: in train mode they move, and
    the saved adapter (which does not hold them) gives other outputs on the original base."""
    xl.unfreeze(image_model.backbone)  # as a plain backbone comes from load_backbone
    pristine = copy.deepcopy(image_model)
    model = get_peft_model(image_model, _lite0_lora())
    before = _base_state(model)
    _train_step(model, image_batch)
    drifted = [n for n, t in before.items() if not torch.equal(t, model.state_dict()[n])]
    assert drifted and all("running_" in n or "num_batches_tracked" in n for n in drifted)
    assert all(not p.requires_grad for n, p in model.named_parameters() if n in before)  # parameters did stay frozen
    model.save_pretrained(tmp_path / "adapter")
    reloaded = PeftModel.from_pretrained(pristine, tmp_path / "adapter").eval()
    assert not torch.allclose(_out(reloaded, image_batch), _out(model, image_batch), atol=1e-3)


def test_the_adapter_saves_small_and_reloads_to_the_same_outputs(case, tmp_path):
    base, batch, config = case
    pristine = copy.deepcopy(base)
    model = _train_step(get_peft_model(base, config()), batch)
    expected = _out(model, batch)
    model.save_pretrained(tmp_path / "adapter")
    full = sum(t.numel() * t.element_size() for t in pristine.state_dict().values())
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert _size(tmp_path / "adapter") < 0.05 * full  # 2.6 % for Lite0 (r=4, head included), 0.2 % for MiniLM
    reloaded = PeftModel.from_pretrained(pristine, tmp_path / "adapter").eval()
    assert torch.allclose(_out(reloaded, batch), expected, atol=1e-5)


def test_two_adapters_swap_with_set_adapter(case):
    base, batch, config = case
    model = get_peft_model(base, config(init_lora_weights=False))  # random B: each adapter changes the output
    model.add_adapter("other", config(init_lora_weights=False))
    model.eval()
    first = _out(model, batch)
    model.set_adapter("other")
    second = _out(model, batch)
    assert model.active_adapter == "other" and not torch.allclose(first, second, atol=1e-4)
    model.set_adapter("default")
    assert torch.allclose(_out(model, batch), first, atol=1e-6)


def test_merge_and_unload_computes_the_same_with_the_base_parameter_count(case):
    base, batch, config = case
    count = sum(p.numel() for p in base.parameters())
    model = _train_step(get_peft_model(base, config(init_lora_weights=False)), batch)
    unmerged = _out(model, batch)
    merged = model.merge_and_unload().eval()
    assert type(merged) is type(base) and not any("lora" in n for n, _ in merged.named_parameters())
    assert sum(p.numel() for p in merged.parameters()) == count
    assert torch.allclose(_out(merged, batch), unmerged, atol=1e-4)
