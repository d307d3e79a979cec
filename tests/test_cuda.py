"""Training, evaluation and prediction keep every tensor on the model's device, tested without a GPU.

Under torch's FakeTensorMode, tensors on device "cuda" exist without one (shapes and devices only), and an
operation that mixes devices raises. On this CPU-only build fake CUDA tensors cannot run autograd nor grid
sampling (augmentation): the meta device, which raises on mixing too, takes the training step with each
augmentation preset, and fake CUDA the rest (the forward pass, weight averaging, evaluation, prediction).
Which device `train.device` picks is a function of the devices there are, tested for each.
"""

import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from qd.core.accuracies import acc_and_loss_tensors, scores
from qd.core.augment import is_active
from qd.core.errors import QDError, pick_device
from qd.core.models import build_model
from qd.core.runtime import resolve_device
from qd.core.train import WeightAverage, batch_loss, build_optimizer, build_scheduler, rounded_to_half
from qd.experiment.conf import CONF_DIR, compose_config

CUDA = torch.device("cuda", 0)  # with its index: moving a tensor to a bare "cuda" needs a real device
MODELS = ("densenet", "convnet", "bestmodel")
PRESETS = sorted(p.stem for p in (CONF_DIR / "augmentation").glob("*.yaml"))


def to_fake_cuda(model: nn.Module) -> nn.Module:
    """`model` with uninitialised weights and buffers on fake CUDA (inside FakeTensorMode, where `model.to`
    would need a real device), its weights not tracked by autograd."""
    for module in model.modules():
        for key, p in module._parameters.items():
            if p is not None:
                module._parameters[key] = nn.Parameter(torch.empty(p.shape, device=CUDA), requires_grad=False)
        for key, b in module._buffers.items():
            if b is not None:
                module._buffers[key] = torch.empty(b.shape, dtype=b.dtype, device=CUDA)
    return model


def one_step(model: nn.Module, cfg: dict, x: torch.Tensor, y: torch.Tensor, aug_gen: torch.Generator,
             fake: bool = False) -> list:  # fmt: skip
    """A training step as fit takes it (the batch drawn on the CPU, augmentation, the loss, the backward pass,
    the optimizer, weight averaging), then an evaluation of the float16-rounded weights and a prediction;
    every tensor it made. On fake CUDA (`fake`) what needs a real device is left out: batch norm in training
    mode (the loss is taken in eval mode), the backward pass, the optimizer, weight averaging and copying
    weights into a model."""
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(1))[: len(x) // 2]
    aug_cfg = cfg["augmentation"] if is_active(cfg["augmentation"]) else None
    model.train(not fake)
    loss = batch_loss(model, nn.CrossEntropyLoss(label_smoothing=0.1), x, y, idx, aug_cfg, aug_gen)
    made = [loss]
    evaluated = model
    if not fake:
        optimizer = build_optimizer({**cfg["optimizer"], "fused": False}, model.parameters())  # no fused meta kernels
        scheduler = build_scheduler(cfg["scheduler"], optimizer, 10)
        ema = WeightAverage(model, 0.99)
        loss.backward()
        optimizer.step()
        if scheduler:
            scheduler.step()
        ema.update(model)
        evaluated = ema.module
        made += [*ema.module.parameters(), *ema.module.buffers()]
    rounded = rounded_to_half(evaluated.state_dict())
    if not fake:
        evaluated.load_state_dict(rounded)
    accuracy, dev_loss = acc_and_loss_tensors(evaluated, x, y)
    return [*made, *rounded.values(), accuracy, dev_loss, scores(evaluated, x).argmax(1), *model.parameters()]


@pytest.mark.parametrize("name", MODELS)
def test_a_forward_pass_an_evaluation_and_a_prediction_stay_on_cuda(name):
    """Under FakeTensorMode: the loss of a batch drawn on the CPU, the rounded weights, an evaluation, a prediction."""
    cfg = compose_config(name, ["augmentation=none"])
    model = build_model(cfg["model"])
    with FakeTensorMode():
        to_fake_cuda(model)
        x, y = torch.randn(64, 784, device=CUDA), torch.randint(0, 6, (64,), device=CUDA)
        made = one_step(model, cfg, x, y, torch.Generator().manual_seed(0), fake=True)
    assert {t.device for t in made} == {CUDA}


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("name", MODELS)
def test_with_each_augmentation_a_training_step_stays_on_the_models_device_and_draws_the_cpus_stream(name, preset):
    cfg = compose_config(name, [f"augmentation={preset}"])
    meta = torch.device("meta")
    x, y = torch.empty(64, 784, device=meta), torch.zeros(64, dtype=torch.long, device=meta)
    on_meta = torch.Generator().manual_seed(0)
    made = one_step(build_model(cfg["model"]).to(meta), cfg, x, y, on_meta)
    assert {t.device for t in made} == {meta}
    on_cpu = torch.Generator().manual_seed(0)
    one_step(build_model(cfg["model"]), cfg, torch.rand(64, 784), torch.zeros(64, dtype=torch.long), on_cpu)
    assert torch.equal(on_meta.get_state(), on_cpu.get_state()), "the same random numbers drawn as on the CPU"


def test_mixing_devices_is_caught_by_these_tests():
    """The checks themselves: a CPU tensor added to a fake CUDA or a meta one raises, as on a real GPU."""
    with FakeTensorMode(), pytest.raises(RuntimeError, match="found at least two devices, cuda:0 and cpu"):
        torch.randn(4, device=CUDA) + torch.randn(4)
    with pytest.raises(RuntimeError, match="Tensor on device cpu is not on the expected device meta"):
        torch.randn(4, device="meta") + torch.randn(4)


@pytest.mark.parametrize(
    "name, cuda, mps, picked",
    [("auto", 2, True, "cuda"), ("auto", 0, True, "mps"), ("auto", 0, False, "cpu"), ("cuda:1", 2, False, "cuda:1"),
     ("cuda", 1, True, "cuda"), ("mps", 1, True, "mps"), ("cpu", 1, True, "cpu")],
)  # fmt: skip
def test_auto_takes_cuda_then_mps_then_the_cpu_and_a_named_device_is_kept(name, cuda, mps, picked):
    assert pick_device(name, cuda, mps) == picked


@pytest.mark.parametrize(
    "name, cuda, mps, message",
    [("cuda", 0, True, "train.device=cuda: no CUDA device is available; use auto or cpu"),
     ("cuda:2", 2, False, "train.device=cuda:2: this machine has 2 CUDA devices, cuda:0 to cuda:1"),
     ("cuda:1", 1, False, "train.device=cuda:1: this machine has 1 CUDA device, cuda:0 to cuda:0"),
     ("mps", 2, False, "train.device=mps: no Apple-silicon GPU (MPS) is available; use auto or cpu"),
     ("cuda:x", 2, False, "train.device: got 'cuda:x'; expected auto, cpu, cuda, cuda:N (a GPU's index) or mps"),
     ("gpu", 2, True, "train.device: got 'gpu'; expected auto, cpu, cuda, cuda:N (a GPU's index) or mps")],
)  # fmt: skip
def test_a_device_this_machine_lacks_is_refused_naming_what_it_has(name, cuda, mps, message):
    with pytest.raises(QDError) as refused:
        pick_device(name, cuda, mps)
    assert str(refused.value) == message


def test_this_machine_resolves_auto_to_what_it_has_and_refuses_mps_without_one():
    has_cuda, has_mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    assert resolve_device("auto").type == ("cuda" if has_cuda else "mps" if has_mps else "cpu")
    if not has_mps:
        with pytest.raises(QDError, match=r"^train\.device=mps: no Apple-silicon GPU \(MPS\) is available"):
            resolve_device("mps")
