import itertools
import math
import re

import pytest
import torch

from conftest import tiny_config
from qd.core.accuracies import accuracy, approx_train_acc_and_loss, dev_acc_and_loss
from qd.core.checkpoint import load_model
from qd.core.data import load_split
from qd.core.errors import QDError
from qd.core.models import TwoLayerDenseNet
from qd.core.train import LOG_HEADER, Diverged, NotLearning, build_optimizer, build_scheduler, train


def _run(tmp_path, cfg, name="run"):
    return train(cfg, tmp_path / f"{name}.log", tmp_path / f"{name}.pt")


def test_log_rows_checkpoint_and_metrics(course_dir, tmp_path):
    metrics = _run(tmp_path, tiny_config("densenet", course_dir, steps=35))
    rows = (tmp_path / "run.log").read_text().splitlines()
    assert rows[0] == LOG_HEADER == "step,train_loss,train_acc,dev_loss,dev_acc"
    assert [int(r.split(",")[0]) for r in rows[1:]] == [10, 20, 30, 35]
    dev_accs = [float(r.split(",")[4]) for r in rows[1:]]
    assert metrics["best_dev_acc"] == pytest.approx(max(dev_accs), abs=1e-6)
    assert metrics["final_dev_acc"] == pytest.approx(dev_accs[-1], abs=1e-6)
    assert metrics["param_count"] == 79_106
    # 79,106 float32 weights are 316,424 bytes; the file adds its metadata and zip headers.
    assert 316_424 < (tmp_path / "run.pt").stat().st_size == metrics["checkpoint_bytes"] < 316_424 + 65_536


def test_the_checkpoint_is_the_best_dev_accuracy_and_reproduces_it(course_dir, tmp_path):
    cfg = tiny_config("bestmodel", course_dir, steps=30, half_storage=True)
    cfg["model"]["width"] = 8
    metrics = _run(tmp_path, cfg)
    model, ckpt = load_model(tmp_path / "run.pt", expect="bestmodel")
    dev = load_split(course_dir, "dev")
    acc, _ = dev_acc_and_loss(model, dev.x, dev.y)
    assert acc == pytest.approx(metrics["best_dev_acc"], abs=1e-9)
    assert ckpt["meta"]["dev_acc"] == metrics["best_dev_acc"] and ckpt["meta"]["best_step"] == metrics["best_step"]


def test_with_ema_the_checkpoint_is_the_averaged_model(course_dir, tmp_path):
    cfg = tiny_config("bestmodel", course_dir, steps=20, ema=0.0)
    cfg["model"]["width"] = 8
    plain = _run(tmp_path, cfg, "plain")
    cfg["train"]["ema"] = 0.998
    ema = _run(tmp_path, cfg, "ema")
    plain_model, ema_model = (load_model(tmp_path / f"{name}.pt")[0] for name in ("plain", "ema"))
    dev = load_split(course_dir, "dev")
    assert dev_acc_and_loss(ema_model, dev.x, dev.y)[0] == pytest.approx(ema["best_dev_acc"], abs=1e-9)
    ema_bn = dict(ema_model.named_buffers())["features.1.running_mean"]
    assert ema_bn.abs().sum() > 0  # the batch-norm statistics are averaged too, not left at their start
    assert not all(torch.equal(a, b) for a, b in zip(ema_model.parameters(), plain_model.parameters(), strict=True))
    assert (tmp_path / "ema.log").read_text() != (tmp_path / "plain.log").read_text()
    assert plain["steps"] == ema["steps"] == 20


def test_same_seed_same_log(course_dir, tmp_path):
    cfg = tiny_config("convnet", course_dir, steps=20)
    _run(tmp_path, cfg, "a")
    _run(tmp_path, cfg, "b")
    assert (tmp_path / "a.log").read_text() == (tmp_path / "b.log").read_text()
    cfg["train"]["seed"] = 1
    _run(tmp_path, cfg, "c")
    assert (tmp_path / "a.log").read_text() != (tmp_path / "c.log").read_text()


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        ("optimizer", "lr", -1.0, r"optimizer.lr: got -1.0; expected a positive learning rate"),
        ("optimizer", "lr", math.nan, r"optimizer.lr: got nan; expected a positive learning rate"),
        ("train", "batch_size", 0, r"train.batch_size: got 0; expected a whole number from 1 to 1200"),
        ("train", "batch_size", 5000, r"train.batch_size: got 5000; expected a whole number from 1 to 1200"),
        ("train", "steps", 0, r"train.steps: got 0; expected a positive number of optimisation steps"),
        ("train", "ema", 1.0, r"train.ema: got 1.0; expected 0 \(off\) or a decay from 0 to 1, such as 0.998"),
        ("train", "max_loss", 0, r"train.max_loss: got 0; expected a positive loss, such as 100"),
        ("train", "not_learning_after", 0.5, r"train.not_learning_after: got 0.5; expected null \(off\) or a step"),
        (
            "optimizer",
            "eps",
            -1.0,
            r"optimizer torch.optim.Adam: bad options \{.*'eps': -1.0\}: Invalid epsilon value: -1.0",
        ),
    ],
)
def test_settings_that_cannot_train_are_refused_before_writing(course_dir, tmp_path, section, key, value, message):
    cfg = tiny_config("densenet", course_dir)
    cfg[section][key] = value
    with pytest.raises(QDError, match=message):
        _run(tmp_path, cfg)
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_scheduler_is_refused_before_writing(course_dir, tmp_path):
    cfg = tiny_config("densenet", course_dir)
    cfg["scheduler"] = {"name": "step"}
    with pytest.raises(QDError, match=r"^scheduler.name: got 'step'; expected none, cosine or onecycle$"):
        _run(tmp_path, cfg)
    assert list(tmp_path.iterdir()) == []


def learning_rates(scheduler: dict, steps: int) -> list[float]:
    """The learning rate of each of `steps` optimisation steps (Adam at 0.1) under `scheduler`."""
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    schedule = build_scheduler(scheduler, optimizer, steps)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return rates


def test_the_cosine_schedule_anneals_from_the_rate_to_zero_over_the_run():
    rates = learning_rates({"name": "cosine"}, 100)
    assert rates[0] == 0.1 and rates[50] == pytest.approx(0.05)
    assert rates[99] == pytest.approx(0.1 * (1 - math.cos(math.pi / 100)) / 2), "one step short of zero"
    assert all(a > b for a, b in itertools.pairwise(rates))


def test_the_onecycle_schedule_peaks_at_the_rate_after_pct_start():
    rates = learning_rates({"name": "onecycle", "pct_start": 0.25}, 100)
    peak = max(range(100), key=rates.__getitem__)
    assert peak == 24 and rates[peak] == pytest.approx(0.1) and rates[0] < 0.1 / 20 and rates[-1] < 1e-5


@pytest.mark.parametrize("scheduler", [{"name": "cosine"}, {"name": "onecycle", "pct_start": 0.25}])
def test_training_runs_under_each_scheduler(course_dir, tmp_path, scheduler):
    cfg = tiny_config("densenet", course_dir, steps=20)
    cfg["scheduler"] = scheduler
    assert _run(tmp_path, cfg)["steps"] == 20


def test_a_loss_past_the_bound_is_divergence_too(course_dir, tmp_path):
    """Adam at learning rate 1e3 reaches losses in the millions at chance accuracy without a NaN."""
    cfg = tiny_config("densenet", course_dir, steps=50)
    cfg["optimizer"]["lr"] = 1e3
    with pytest.raises(Diverged, match=r"^training diverged at step \d+ \(loss [\d.e+]+, above train.max_loss=100\); "
                                       r"try a smaller optimizer.lr$"):  # fmt: skip
        _run(tmp_path, cfg)


def test_a_run_at_chance_past_its_warm_up_is_not_learning(course_dir, tmp_path):
    cfg = tiny_config("densenet", course_dir, steps=40, not_learning_after=20)
    cfg["optimizer"]["lr"] = 1e-9
    expected = (r"^not learning: dev accuracy at most 0\.1\d+ by step 20 \(chance 0\.1667; "
                r"train.not_learning_after=20\); try another optimizer.lr$")  # fmt: skip
    with pytest.raises(NotLearning, match=expected):
        _run(tmp_path, cfg)
    cfg["optimizer"]["lr"] = 1e-3
    assert _run(tmp_path, cfg)["best_dev_acc"] > 1 / 6 + 0.02, "a run that learns is not stopped"


def test_running_out_of_device_memory_is_one_line_naming_the_batch_size(course_dir, tmp_path, monkeypatch):
    def out_of_memory(self, x):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 15.77 GiB total)")

    monkeypatch.setattr(TwoLayerDenseNet, "forward", out_of_memory)
    expected = "train.device=auto: out of memory at step 1; try a smaller train.batch_size or a smaller model"
    with pytest.raises(QDError, match=f"^{re.escape(expected)}$"):
        _run(tmp_path, tiny_config("densenet", course_dir))
    assert not (tmp_path / "run.pt").exists()


def test_divergence_stops_at_once_and_writes_no_checkpoint(course_dir, tmp_path):
    cfg = tiny_config("densenet", course_dir, steps=200)
    cfg["optimizer"] = {"_target_": "torch.optim.SGD", "lr": 1e4}
    diverged = r"training diverged at step \d+ \(loss (nan|inf|[\d.e+]+, above train.max_loss=100)\); try a smaller"
    with pytest.raises(Diverged, match=diverged):
        _run(tmp_path, cfg)
    assert not (tmp_path / "run.pt").exists()


def test_an_oversized_bestmodel_is_refused_before_training(course_dir, tmp_path):
    cfg = tiny_config("bestmodel", course_dir, half_storage=False)
    cfg["model"]["width"] = 64
    with pytest.raises(QDError, match=r"its checkpoint would be [\d,]+ bytes; bestmodel allows at most 1,000,000"):
        _run(tmp_path, cfg)


def test_optimizers_build_from_their_target(course_dir):
    from qd.experiment.conf import compose_config

    params = [torch.nn.Parameter(torch.zeros(2))]
    for name, cls in [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)]:
        cfg = compose_config("densenet", [f"optimizer={name}"])["optimizer"]
        opt = build_optimizer(cfg, params)
        assert type(opt) is cls and opt.defaults["lr"] == cfg["lr"] and opt.defaults["fused"] is True
    assert build_optimizer(cfg, params).defaults["nesterov"] is True
    # An optimizer this torch cannot fuse (RMSprop) is built without: fused is a speed hint, not a setting.
    rmsprop = build_optimizer({"_target_": "torch.optim.RMSprop", "fused": True, "lr": 0.01}, params)
    assert type(rmsprop) is torch.optim.RMSprop and "fused" not in rmsprop.defaults


def test_accuracy_functions(course_dir):
    assert accuracy([1, 2, 3, 4], [1, 2, 0, 4]) == 0.75
    model = torch.nn.Sequential(torch.nn.Linear(784, 6), torch.nn.Dropout(0.5))
    split = load_split(course_dir, "train")
    g = torch.Generator().manual_seed(0)
    acc, loss = approx_train_acc_and_loss(model, split.x, split.y, generator=g)
    assert model.training, "evaluation restores the training mode"
    acc2, loss2 = approx_train_acc_and_loss(model, split.x, split.y, generator=torch.Generator().manual_seed(0))
    assert (acc, loss) == (acc2, loss2), "eval mode: dropout off, same sample, same figures"
    assert 0 <= acc <= 1 and loss > 0
