"""The best model's README: its layer table from the real model, and what a sweep measured, ties said as ties."""

from __future__ import annotations

from qd.core.models import build_model, count_parameters
from qd.deliver.model_readme import effect, groups, layer_table


def test_the_layer_table_follows_an_image_through_the_real_model():
    model = build_model({"name": "bestmodel", "width": 4, "depth": 1, "dropout": 0.1, "tta": True}).eval()
    table = layer_table(model)
    shapes = [(name, shape) for name, _, shape, _ in table]
    assert shapes == [
        ("features.0", (1, 4, 28, 28)), ("features.1", (1, 4, 28, 28)), ("features.2", (1, 4, 28, 28)),
        ("features.3", (1, 4, 14, 14)),
        ("features.4", (1, 8, 14, 14)), ("features.5", (1, 8, 14, 14)), ("features.6", (1, 8, 14, 14)),
        ("features.7", (1, 8, 7, 7)),
        ("features.8", (1, 16, 7, 7)), ("features.9", (1, 16, 7, 7)), ("features.10", (1, 16, 7, 7)),
        ("classifier.0", (1, 16)), ("classifier.1", (1, 6)),
    ]  # fmt: skip
    params = {name: n for name, _, _, n in table}
    assert params["features.0"] == 4 * 9 and params["features.4"] == 4 * 8 * 9 and params["classifier.1"] == 16 * 6 + 6
    assert sum(params.values()) == count_parameters(model)
    assert table[0][1] == "Conv2d(1, 4, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)"


def trials(*pairs: tuple[str, float]) -> list[dict]:
    return [{"params": {"optimizer": value}, "best_dev_acc": acc} for value, acc in pairs]


def test_a_tie_is_said_as_a_tie_and_a_difference_as_one():
    tie = trials(("adam", 0.94), ("sgd", 0.93996), ("sgd", 0.94))  # means equal as printed
    assert effect("optimizer", groups(tie, "optimizer")) == (
        "optimizer: no difference measured between adam (0.9400, 1 trial) and sgd (0.9400, 2 trials)."
    )
    apart = trials(("adam", 0.94), ("sgd", 0.94), ("adamw", 0.90))
    assert effect("optimizer", groups(apart, "optimizer")) == (
        "optimizer: best on average with adam (0.9400, 1 trial) and sgd (0.9400, 1 trial), "
        "worst with adamw (0.9000, 1 trial): a difference of 4.0 points."
    )
