"""How the convolutions run, chosen from the CPU: a fixed rule, a plain fallback, the same result every run."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, tiny_config
from qd.core.cpu import CpuInfo, describe_cpu, memory_format, onednn_isa
from qd.core.data import load_split
from qd.core.errors import QDError
from qd.core.train import fit
from qd.datasets.synth import write_synthetic

CPU = torch.device("cpu")
AVX2 = CpuInfo("AMD EPYC 7B12", "AuthenticAMD", 23, isa=("AVX2",), kernels="AVX2", onednn=True)  # Zen 2
ZEN4 = CpuInfo("AMD EPYC 9B14", "AuthenticAMD", 25, isa=("AVX2", "AVX-512"), kernels="AVX512", onednn=True)
XEON = CpuInfo("Intel Xeon Platinum 8481C", "GenuineIntel", 6, ("AVX2", "AVX-512", "AMX"), "AVX512", onednn=True)


def test_the_layout_is_a_rule_on_the_cpu_description_with_the_plain_layout_where_an_option_is_missing():
    assert [memory_format("auto", CPU, cpu) for cpu in (AVX2, AVX2, ZEN4, XEON)] == [torch.channels_last] * 4
    plain = {
        "no oneDNN": CpuInfo("AMD EPYC 7B12", "AuthenticAMD", 23, ("AVX2",), "AVX2", onednn=False),
        "a torch that cannot say its kernels' level": CpuInfo(
            "AMD EPYC 7B12", "AuthenticAMD", 23, ("AVX2",), "", onednn=True
        ),  # fmt: skip
        "an x86 CPU without AVX2": CpuInfo("Intel Celeron N4020", "GenuineIntel", 6, (), "DEFAULT", onednn=True),
        "Apple silicon": CpuInfo("Apple M2", "", 0, ("NEON",), "DEFAULT", onednn=True),
    }
    for why, cpu in plain.items():
        assert memory_format("auto", CPU, cpu) == torch.contiguous_format, why
    assert memory_format("auto", torch.device("cuda"), AVX2) == torch.contiguous_format, "a GPU keeps torch's default"
    assert memory_format("contiguous", CPU, AVX2) == torch.contiguous_format, "the setting overrides the rule"
    assert memory_format("channels_last", CPU, plain["no oneDNN"]) == torch.channels_last


def test_oneDNN_is_capped_at_AVX2_on_zen_4_alone():
    zen3 = CpuInfo("AMD EPYC 7B13", "AuthenticAMD", 25, ("AVX2",), "AVX2", onednn=True)
    zen5 = CpuInfo("AMD EPYC 9B45", "AuthenticAMD", 26, ("AVX2", "AVX-512"), "AVX512", onednn=True)
    assert [onednn_isa(cpu) for cpu in (ZEN4, ZEN4, AVX2, zen3, zen5, XEON)] == ["AVX2", "AVX2"] + [None] * 4


@pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN")
def test_oneDNN_switched_off_in_torch_gives_the_plain_layout():
    with torch.backends.mkldnn.flags(enabled=False):
        assert not describe_cpu().onednn
        assert memory_format("auto", CPU) == torch.contiguous_format


@pytest.mark.skipif(not shutil.which("lscpu") or not sys.platform.startswith("linux"), reason="Linux's lscpu")
def test_the_description_names_this_cpu_as_lscpu_does_and_follows_a_cap_on_torchs_kernels():
    lscpu = dict(
        line.split(":", 1)
        for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"}
        ).stdout.splitlines()
    )
    flags = set(lscpu.get("Flags", "").split())
    cpu = describe_cpu()
    assert cpu.model == lscpu["Model name"].strip()
    assert ("AVX2" in cpu.isa) == ("avx2" in flags) and ("AVX-512" in cpu.isa) == ("avx512f" in flags)
    assert cpu.kernels == torch.backends.cpu.get_cpu_capability() and cpu.onednn
    if "avx2" in flags:
        code = "from qd.core.cpu import describe_cpu; print(describe_cpu().kernels)"
        env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "PYTHONPATH": str(ROOT)}
        capped = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert capped.stdout.strip() == "AVX2", capped.stderr


def test_an_unknown_layout_is_refused_naming_the_setting(course_dir):
    cfg = tiny_config("convnet", course_dir, memory_format="nhwc")
    with pytest.raises(QDError, match=r"^train.memory_format: got 'nhwc'; expected auto, channels_last or contiguous$"):
        fit(cfg, load_split(course_dir, "train"), load_split(course_dir, "dev"))


# In a fresh process (oneDNN's instruction set is fixed by its first convolution): fit the config in argv[1]
# `runs` times; print the best dev accuracy, whether every run's weights and log were the same bytes, and the layout
# the weights trained in.
FIT = """
import io, json, sys
import torch
from qd.core.data import load_split
from qd.core.train import fit

cfg, runs = json.loads(sys.argv[1]), int(sys.argv[2])
train, dev = load_split(cfg["data"]["dir"], "train"), load_split(cfg["data"]["dir"], "dev")
results, outputs = [fit(cfg, train, dev) for _ in range(runs)], []
for result in results:
    buffer = io.BytesIO()
    torch.save(result.model.state_dict(), buffer)
    outputs.append((buffer.getvalue(), json.dumps(result.history)))
conv = next(m for m in results[0].model.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)
print(json.dumps({"best_dev_acc": results[0].best_dev_acc, "same": len(set(outputs)) == 1,
                  "channels_last": conv.weight.is_contiguous(memory_format=torch.channels_last)}))
"""
CHOICES = [(layout, isa) for layout in ("channels_last", "contiguous") for isa in ("AVX2", "ALL")]  # ALL: no cap


def fit_in_a_process(cfg: dict, onednn_isa: str, runs: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ONEDNN_MAX_CPU_ISA": onednn_isa}
    result = subprocess.run([sys.executable, "-c", FIT, json.dumps(cfg), str(runs)], env=env, capture_output=True,
                            text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.parametrize(("model", "layout", "isa"), [("convnet", *choice) for choice in CHOICES]
                         + [pytest.param("bestmodel", layout, "AVX2", marks=pytest.mark.slow)
                            for layout in ("channels_last", "contiguous")])  # fmt: skip
def test_each_choice_trains_as_chosen_and_repeats_byte_for_byte_at_one_thread(course_dir, model, layout, isa):
    cfg = tiny_config(model, course_dir, steps=30, memory_format=layout)
    if model == "bestmodel":
        cfg["model"]["width"] = 8
    result = fit_in_a_process(cfg, isa, runs=2)
    assert result["channels_last"] == (layout == "channels_last")
    assert result["same"], "the weights or the log differ between two runs of one seed"


# configure_cpu, then one convolution, oneDNN telling which kernel ran it.
ONE_CONVOLUTION = """
import torch
from qd.core.runtime import configure_cpu

configure_cpu(1)
torch.nn.Conv2d(8, 16, 3)(torch.randn(4, 8, 26, 26))
"""


@pytest.mark.skipif(onednn_isa(describe_cpu()) is None, reason="a CPU whose oneDNN qd leaves uncapped")
def test_on_a_capped_cpu_oneDNN_runs_the_chosen_kernels_unless_the_user_chose():
    for given, expected in ((None, "avx2"), ("AVX512_CORE", "avx512_core")):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "ONEDNN_VERBOSE": "1"}
        env.pop("ONEDNN_MAX_CPU_ISA", None)
        env.update({"ONEDNN_MAX_CPU_ISA": given} if given else {})
        result = subprocess.run([sys.executable, "-c", ONE_CONVOLUTION], env=env, capture_output=True, text=True)
        kernels = re.findall(r"^onednn_verbose,.*,exec,cpu,convolution,([\w:]+),", result.stdout, re.MULTILINE)
        assert kernels and all(k.endswith(f":{expected}") for k in kernels), (given, kernels, result.stderr)


@pytest.fixture(scope="module")
def larger_dev(tmp_path_factory):
    """Synthetic drawings with 4,998 dev images: half a point of dev accuracy is 25 of them."""
    return write_synthetic(tmp_path_factory.mktemp("layouts") / "datasets", seed=2, sizes=(19998, 4998, 6))


@pytest.mark.heavy
def test_the_choices_agree_on_dev_accuracy_after_the_courses_2000_steps(larger_dev):
    """The convnet as run.sh trains it (learning rate 0.01, 2,000 steps of 100), each choice in its own process."""
    best = {}
    for layout, isa in CHOICES:
        cfg = tiny_config("convnet", larger_dev, steps=2000, memory_format=layout)
        cfg["train"]["eval_every"], cfg["optimizer"]["lr"] = 100, 0.01
        best[layout, isa] = fit_in_a_process(cfg, isa, runs=1)["best_dev_acc"]
    assert max(best.values()) - min(best.values()) <= 0.005, best
