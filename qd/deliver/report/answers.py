"""The course's *** questions, each with its answer drawn from a `Measurements`.

Measured questions get a measured answer. The explanation questions (`draft=True`) get a draft built
from the same measurements, for the student to check and rewrite: every number in it is measured by
this run, and where the run measured nothing the draft says so. A new question is one more entry in
QUESTIONS.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from math import prod

from qd.core.data import CLASS_NAMES, N_CLASSES
from qd.deliver.model_readme import effect, groups
from qd.deliver.report.measure import NOISE, STROKE, Measurements
from qd.experiment.results import show

SECTIONS = {  # the course's numbering of the sections that hold *** questions
    "1.5": "Implementing a Simple Two-Layer NN",
    "1.6": "Implementing a Simple Convolutional NN",
    "1.8": "Exploring Failure Modes",
}
REGULARISERS = ("augmentation", "model.dropout", "optimizer.weight_decay", "train.label_smoothing", "train.ema")


@dataclass(frozen=True)
class Question:
    number: str
    text: str  # the course's question, abridged
    answer: Callable[[Measurements], str]
    figures: tuple[str, ...] = ()  # shown with the answer, when the report drew them
    draft: bool = False


def provenance(m: Measurements) -> str:
    """Where the report's measurements came from, in Markdown."""
    sources = ", ".join(f"`{s}`" for s in m.sources)
    return (
        f"Submission `{show(m.submission)}` (winners.json), data `{show(m.data_dir)}`, trials from {sources}: "
        f"{len(m.records)} on this data at the winners' number of steps" + (f" ({m.left_out})." if m.left_out else ".")
    )


def last_row(m: Measurements, model: str) -> dict:
    return m.logs[model].iloc[-1]


def points(a: float, b: float) -> str:
    """`a` against `b` in words: `12.3 points above`, `below`, or `level with`."""
    if round(a, 4) == round(b, 4):
        return "level with"
    return f"{100 * abs(a - b):.1f} points {'above' if a > b else 'below'}"


def curve_caption(m: Measurements, model: str) -> str:
    last = last_row(m, model)
    return (
        f"{model}: train and dev accuracy against step; at the last step ({int(last['step'])}) "
        f"train {last['train_acc']:.4f}, dev {last['dev_acc']:.4f}"
    )


def noisy_caption(m: Measurements) -> str:
    i = m.correct[0]
    return (
        f"dev image #{i} ({CLASS_NAMES[m.y[i]]}) clean and with noise of std {NOISE} of its range: "
        f"predicted {CLASS_NAMES[m.perturbed['noise'].pred[i]]}"
    )


def dense_sizes(m: Measurements) -> tuple[int, str, int, str]:
    """The dense net's weights and biases: counts, and per layer (`784x100 + 100x6`, `100 + 6`)."""
    weights = sum(i * o for i, o in m.dense_weights)
    return (weights, " + ".join(f"{i}x{o}" for i, o in m.dense_weights), sum(m.dense_biases),
            " + ".join(str(b) for b in m.dense_biases))  # fmt: skip


def kept_under(m: Measurements, kind: str, how: str) -> str:
    p = m.perturbed[kind]
    return f"{p.kept} of {len(m.correct)} stay correct {how}; whole dev set {p.acc:.4f} (clean {m.clean:.4f})"


def dense_lr(m: Measurements) -> str:
    cfg, dense = m.configs["densenet"], m.winners["densenet"]
    optimizer = cfg["optimizer"]["_target_"].rsplit(".", 1)[-1]
    return (
        f"learning rate {cfg['optimizer']['lr']:.4g} ({optimizer}, batch size {cfg['train']['batch_size']}, "
        f"{dense['steps']} steps): dev accuracy {dense['best_dev_acc']:.4f}, {m.trial('densenet')}"
    )


def conv_settings(m: Measurements) -> str:
    cfg, conv = m.configs["convnet"], m.winners["convnet"]
    return (
        f"batch size {cfg['train']['batch_size']}, learning rate {cfg['optimizer']['lr']:.4g}, {conv['steps']} steps "
        f"(best dev accuracy at step {conv['best_step']}), training took {conv['train_time_s']:.1f} s"
    )


def augmentations(cfg: dict) -> list[str]:
    """The augmentations a config trains with (probability above 0)."""
    return [name for name, op in cfg["augmentation"].items() if op.get("p", 0) > 0]


# The drafts.


def limited_data(m: Measurements) -> str:
    """1.5.12: the measured train/dev gaps and what the sweeps measured of augmentation and regularisation."""
    dense, best, cfg = last_row(m, "densenet"), last_row(m, "bestmodel"), m.configs["bestmodel"]
    trials = m.best_trials
    varied = [name for name in REGULARISERS if len(groups(trials, name)) >= 2]
    counted = f"{len(trials)} complete best-model {'trial' if len(trials) == 1 else 'trials'}"
    if not trials:
        swept = ("No complete best-model trial on the submitted model's data and number of steps is among the "
                 "records: they measured nothing about augmentation or regularisation.")  # fmt: skip
    elif not varied:
        swept = (f"The records' {counted} on the submitted model's data and number of steps did not vary "
                 "augmentation or regularisation: they measured nothing about their effect.")  # fmt: skip
    else:
        swept = (f"What the records' {counted} on the submitted model's data and number of steps measured, one "
                 "setting at a time while the others varied too (a hint, not a controlled comparison): "
                 + " ".join(effect(name, groups(trials, name)) for name in varied))  # fmt: skip
    return " ".join([
        f"At its last logged step ({int(dense['step'])}) the winning dense net scores {dense['train_acc']:.4f} on "
        f"training images and {dense['dev_acc']:.4f} on the dev set (train "
        f"{points(dense['train_acc'], dense['dev_acc'])} dev).",
        "With 100 images a class I would get more out of each image and keep the model from memorising them: "
        "augment the training images with changes that keep their class (small shifts, rotations and scalings, "
        "mirror images, a little noise), so that each is seen in many forms; regularise (weight decay, dropout, "
        "label smoothing, an average of the weights); keep the step of best dev accuracy rather than the last; "
        "and prefer a small convolutional model, whose shared filters leave far fewer parameters to fit.",
        swept,
        f"The submitted best model trained with augmentation {', '.join(augmentations(cfg)) or 'none'}, dropout "
        f"{cfg['model']['dropout']:.3g}, weight decay {cfg['optimizer'].get('weight_decay', 0):.3g}, label smoothing "
        f"{cfg['train']['label_smoothing']} and weight averaging {cfg['train']['ema']}; at its last logged step "
        f"({int(best['step'])}) it scores {best['train_acc']:.4f} on training images and {best['dev_acc']:.4f} on "
        f"the dev set (train {points(best['train_acc'], best['dev_acc'])} dev).",
    ])  # fmt: skip


def first_layer(m: Measurements, model: str) -> str:
    """`Module` has N parameters for M outputs (shape), from the model's layer table."""
    _, module, shape, n = next(row for row in m.layers[model] if row[3])
    grid = f" ({' x '.join(map(str, shape[1:]))})" if len(shape) > 2 else ""
    return f"`{module}`, has {n:,} parameters for {prod(shape[1:]):,} outputs{grid}"


def local_and_shared(m: Measurements) -> str:
    """1.6.2: fully connected against convolutional, with both nets' measured sizes and accuracies."""
    dense, conv = m.winners["densenet"], m.winners["convnet"]
    sizes = {model: sum(row[3] for row in m.layers[model]) for model in ("densenet", "convnet")}
    return " ".join([
        "A fully-connected layer gives every hidden unit its own weight for every input pixel: each unit sees the "
        "whole image, and a pattern must be learnt anew at each position where it may appear. A convolutional layer "
        "connects each hidden unit to a small patch of the image only, and uses the same filter weights at every "
        "position (weight sharing): far fewer parameters, and a pattern learnt in one place is detected everywhere.",
        "Sliding one filter over the image makes the layer translation equivariant: shifting the drawing shifts its "
        "feature maps by the same amount; the conv net's average over positions then makes its scores nearly "
        "invariant to where the drawing lies (up to the borders and the stride).",
        f"Measured on this run's models: the dense net's first layer, {first_layer(m, 'densenet')}; the conv net's "
        f"first layer, {first_layer(m, 'convnet')}. In all the dense net has {sizes['densenet']:,} parameters and the "
        f"conv net {sizes['convnet']:,} ({sizes['densenet'] / sizes['convnet']:.0f} times fewer). Their dev "
        f"accuracies: dense net {dense['best_dev_acc']:.4f}, conv net {conv['best_dev_acc']:.4f} "
        f"(the conv net {points(conv['best_dev_acc'], dense['best_dev_acc'])} the dense net).",
    ])  # fmt: skip


def no_errors(m: Measurements) -> str:
    return f"The best model classified all {len(m.y):,} dev images correctly: there are no wrong images to compare."


def differences(m: Measurements) -> str:
    """1.8.4a: the wrong images' classes, the confusion matrix, and the share of stroke pixels."""
    if not len(m.wrong):
        return no_errors(m)
    pairs = Counter((CLASS_NAMES[m.y[i]], CLASS_NAMES[m.pred[i]]) for i in m.wrong)
    taken = ", ".join(f"{true} taken for {pred} ({n})" for (true, pred), n in pairs.most_common())
    by_class = sorted(zip(m.class_accuracy, CLASS_NAMES, strict=True))
    (low, low_name), (high, high_name) = by_class[0], by_class[-1]
    return " ".join([
        f"The {len(m.wrong)} wrong images shown are: {taken}.",
        f"Over the whole dev set ({len(m.y):,} images, {int((~m.right).sum()):,} errors) the most frequent confusion "
        f"is {m.worst_confusion}; the model is right most often on {high_name} ({high:.4f}) and least on {low_name} "
        f"({low:.4f}).",
        f"Share of stroke pixels (at least {STROKE} of 255): {m.stroke_share(m.wrong):.1%} in the wrong images shown "
        f"against {m.stroke_share(m.correct):.1%} in the correct ones; over the whole dev set "
        f"{m.stroke_share(~m.right):.1%} against {m.stroke_share(m.right):.1%}.",
        "Whether the wrong drawings are unfinished, unusual or ambiguous this run did not measure: judge it from the "
        "figures.",
    ])  # fmt: skip


def human_difficulty(m: Measurements) -> str:
    """1.8.4b: what a human finds hard is not measured; the model's labels of the wrong images are."""
    if not len(m.wrong):
        return no_errors(m)
    labels = ", ".join(f"#{i} {CLASS_NAMES[m.y[i]]} as {CLASS_NAMES[m.pred[i]]}" for i in m.wrong)
    return (
        "This run did not measure how hard these drawings are for a person. Look at the wrong images and count "
        "how many you would have named by their true class; where you would hesitate too, the error is an "
        f"ambiguous drawing, where you would not, it is the model's. The model's labels of the {len(m.wrong)} wrong "
        f"images (dev index, true class as predicted class): {labels}."
    )


def flips(m: Measurements) -> str:
    """1.8.11: the flip and noise measurements, and what the best model trained with."""
    v, h, noise, n = m.perturbed["vflip"], m.perturbed["hflip"], m.perturbed["noise"], len(m.correct)
    aug = m.configs["bestmodel"]["augmentation"]
    mirror = ""
    if m.tta:
        mirror = (" Its eval-mode scores average each image with its mirror, which makes them the same for an image "
                  "and its mirror" + (": hence the same accuracy flipped horizontally as clean." if h.acc == m.clean
                                      else "."))  # fmt: skip
    vertical = "" if aug.get("vflip", {}).get("p", 0) > 0 else " Its augmentation has no vertical flip."
    return " ".join([
        f"Measured on the dev set: flipped vertically, {v.kept} of the {n} correct images shown stay correct and the "
        f"accuracy goes from {m.clean:.4f} to {v.acc:.4f}; flipped horizontally, {h.kept} of {n} stay correct and the "
        f"accuracy is {h.acc:.4f}.",
        "Such a failure is not necessarily one: where orientation carries meaning a classifier should tell an image "
        "from its flipped copy (the letters b and d are mirror images, as are b and p upside down; an arrow means "
        "left or right, up or down), and invariance would throw that information away.",
        "To make the model invariant to horizontal flips, train it on randomly mirrored copies of its images (flip "
        "each training image with probability 0.5, so that both orientations are seen as often), or average its "
        "scores for an image and its mirror when predicting.",
        f"This best model trained with horizontal flips at probability {aug.get('hflip', {}).get('p', 0.0)}."
        + mirror + vertical,
        f"Under Gaussian noise of std {NOISE} of each image's range, {noise.kept} of {n} stay correct and the "
        f"accuracy is {noise.acc:.4f}; it trained with noise at probability {aug.get('noise', {}).get('p', 0.0)}.",
    ])  # fmt: skip


QUESTIONS = [
    Question("1.5.8a", "What accuracy would a random classifier achieve (to the nearest whole percent)?",
             lambda m: f"{100 / N_CLASSES:.0f}% (1/6 = {1 / N_CLASSES:.4f})"),
    Question("1.5.8b", "What accuracy would a majority-vote classifier achieve?",
             lambda m: f"{100 * m.majority['dev'][1]:.0f}% (majority class {m.majority['dev'][0]}: "
                       f"{m.majority['dev'][1]:.4f} of the dev labels; train {m.majority['train'][1]:.4f})"),
    Question("1.5.9a", "How many weights does torch.nn.Linear create in the dense net?",
             lambda m: "{:,} weights ({})".format(*dense_sizes(m)[:2])),
    Question("1.5.9b", "How many biases?", lambda m: "{:,} biases ({})".format(*dense_sizes(m)[2:])),
    Question("1.5.10", "What were your best settings for learning rate?", dense_lr, ("densenet-lr.png",)),
    Question("1.5.11", "Plot training and validation accuracy against step for your best settings.",
             lambda m: f"{curve_caption(m, 'densenet')}; {m.trial('densenet')}", ("densenet-curves.png",)),
    Question("1.5.12", "With a limited dataset (say 100 images a class), how could you increase your model's "
             "performance while limiting overfitting?", limited_data, draft=True),
    Question("1.6.2", "Convolutional filters are applied to local regions with weights shared across regions: how "
             "does this compare to fully-connected networks?", local_and_shared, draft=True),
    Question("1.6.5", "Plot training and validation accuracy against optimisation step for your best settings.",
             lambda m: f"{curve_caption(m, 'convnet')}; {m.trial('convnet')}", ("convnet-curves.png",)),
    Question("1.6.6", "Your best batch size, learning rate and number of steps; how long did training take?",
             conv_settings),
    Question("1.6.7", "What was the best validation accuracy achieved?",
             lambda m: f"{m.winners['convnet']['best_dev_acc']:.4f} dev accuracy (conv net, {m.trial('convnet')})"),
    Question("1.8.4a", "Are there qualitative differences between 10 correctly and 10 wrongly classified dev images?",
             differences, ("correct.png", "wrong.png", "confusion.png"), draft=True),
    Question("1.8.4b", "Are the misclassified examples more difficult for you to classify as a human?",
             human_difficulty, draft=True),
    Question("1.8.6", "Add Gaussian noise (std a tenth of each image's range) to the 10 correct images, classify "
             "them, and show one.", noisy_caption, ("noisy-example.png", "noise.png")),
    Question("1.8.7", "Does the classifier still classify all 10 noisy images correctly?",
             lambda m: kept_under(m, "noise", "under noise"), ("noise-curve.png",)),
    Question("1.8.10", "Flipped vertically, does the classifier still classify all 10 images correctly?",
             lambda m: kept_under(m, "vflip", "flipped vertically"), ("vflip.png",)),
    Question("1.8.11", "Is failing on flipped images necessarily a failure; when would you not want invariance to "
             "horizontal flips? If you do want it, how would you change training?", flips, ("hflip.png",), draft=True),
]  # fmt: skip
