"""Big local models: device_map="auto", PEFT adapters, --batch-size auto, length-sorted generation, bad input."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from distillkit.cli.common import run_app
from distillkit.cli.dialogbench import app
from distillkit.dialogbench.evaluate import EvalSettings, evaluate
from distillkit.errors import UserError
from distillkit.lm import GenerationConfig, load_local_lm, local
from distillkit.lm.local import LocalLM, find_batch_size, model_identity
from distillkit.lm.offline import tiny_llama_folder

CTX = "Read the dialogue.【Dialogue content】User: hi there\nAssistant: hello!【Reply】"
REQUESTS = [(CTX, "Fine, thanks."), (CTX, "The weather is bad."), ("Another context ", "with a space"), ("", "none")]
PROMPTS = ["Hi", "A much longer prompt that needs padding on the left side", "Mid length prompt", "Yo", "Four"]


def make_adapter(base: Path, out: Path, seed: int = 0) -> Path:
    """A LoRA adapter on q_proj/v_proj of `base` with random (non-zero) B matrices, saved to `out`."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    with torch.random.fork_rng():  # LoRA's A matrices are drawn from the global generator: seed it too
        torch.manual_seed(seed)
        model = get_peft_model(
            AutoModelForCausalLM.from_pretrained(base),
            LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
        )
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def base():
    return tiny_llama_folder()


@pytest.fixture(scope="module")
def adapter(base, tmp_path_factory):
    return make_adapter(base, tmp_path_factory.mktemp("lora") / "adapter")


def logprobs(lm: LocalLM) -> list[float]:
    return lm.loglikelihood(REQUESTS)


def test_device_map_auto_on_a_cpu_scores_like_one_device(base):
    one = load_local_lm(str(base), device="cpu")
    spread = load_local_lm(str(base), device_map="auto")
    assert spread.device == torch.device("cpu")  # no GPU here: accelerate keeps everything on the CPU
    assert logprobs(spread) == pytest.approx(logprobs(one), abs=1e-5)
    cfg = GenerationConfig(max_new_tokens=5)
    assert spread.generate(PROMPTS[:2], cfg) == one.generate(PROMPTS[:2], cfg)


def test_peft_adapter_changes_scores_and_equals_the_merged_model(base, adapter):
    plain = logprobs(load_local_lm(str(base), device="cpu"))
    lm = load_local_lm(str(base), device="cpu", peft=str(adapter))
    merged = load_local_lm(str(base), device="cpu", peft=str(adapter), peft_merge=True)
    with_adapter, with_merged = logprobs(lm), logprobs(merged)
    assert all(abs(a - b) > 1e-3 for a, b in zip(with_adapter, plain, strict=True)), (with_adapter, plain)
    assert with_merged == pytest.approx(with_adapter, abs=1e-4)
    assert type(lm.model).__name__ == "PeftModelForCausalLM" and type(merged.model).__name__ == "LlamaForCausalLM"
    info = lm.describe()["adapter"]
    assert info["path"] == str(adapter.resolve()) and not info["merged"] and merged.describe()["adapter"]["merged"]
    identity = model_identity(str(base), adapter=str(adapter))
    assert identity.startswith(model_identity(str(base)) + f"+adapter:{adapter.resolve()}:")
    assert identity.endswith(info["sha256"])


def test_the_adapter_hash_follows_its_content(base, adapter, tmp_path):
    other = make_adapter(base, tmp_path / "a", seed=1)
    digest = model_identity(str(base), adapter=str(adapter)).rsplit(":", 1)[1]
    assert model_identity(str(base), adapter=str(other)).rsplit(":", 1)[1] != digest
    shutil.copy(adapter / "adapter_model.safetensors", other / "adapter_model.safetensors")
    assert model_identity(str(base), adapter=str(other)).rsplit(":", 1)[1] == digest  # same files, same hash


def test_bad_adapters_are_refused_in_one_line(base, adapter, tmp_path):
    smaller = tiny_llama_folder(hidden=32)
    foreign = make_adapter(smaller, tmp_path / "foreign")
    with pytest.raises(UserError, match="does not exist; check --peft"):
        model_identity(str(base), adapter=str(tmp_path / "missing"))
    with pytest.raises(UserError, match="is not a PEFT adapter folder"):
        model_identity(str(base), adapter=str(tmp_path))
    with pytest.raises(UserError, match="was made for base model .*tiny-llama-h32"):
        model_identity(str(base), adapter=str(foreign))
    with pytest.raises(UserError, match="was made for base model"):
        load_local_lm(str(base), device="cpu", peft=str(foreign))
    # the same adapter claiming the right base model: its shapes give it away, before and while loading
    config = json.loads((foreign / "adapter_config.json").read_text())
    (foreign / "adapter_config.json").write_text(json.dumps(config | {"base_model_name_or_path": str(base)}))
    for load in (
        lambda: model_identity(str(base), adapter=str(foreign)),
        lambda: load_local_lm(str(base), peft=str(foreign)),
    ):
        with pytest.raises(UserError, match=r"does not fit model .*size mismatch.*\[4, 32\]") as e:
            load()
        assert "\n" not in str(e.value)


def test_find_batch_size_doubles_until_memory_runs_out():
    tried = []

    def fits_up_to(limit):
        def probe(n):
            tried.append(n)
            if n > limit:
                raise torch.OutOfMemoryError("CUDA out of memory (fake)")

        return probe

    assert find_batch_size(fits_up_to(12)) == 8 and tried == [1, 2, 4, 8, 16]
    assert find_batch_size(fits_up_to(10**6), cap=64) == 64
    with pytest.raises(UserError, match="runs out of memory on one question"):
        find_batch_size(fits_up_to(0), what="one question")

    def broken(n):
        raise RuntimeError("shape error, not memory")

    with pytest.raises(RuntimeError, match="shape error"):
        find_batch_size(broken)


def oom_above(lm: LocalLM, rows: int, monkeypatch) -> list[int]:
    """Make `lm`'s forward pass run out of memory (a fake CUDA OOM) above `rows` sequences; returns the sizes seen."""
    real = lm.model.forward
    seen = []

    def forward(input_ids=None, **kw):
        seen.append(input_ids.shape[0])
        if input_ids.shape[0] > rows:
            raise torch.OutOfMemoryError("CUDA out of memory (fake)")
        return real(input_ids=input_ids, **kw)

    monkeypatch.setattr(lm.model, "forward", forward)
    monkeypatch.setattr(local, "oom_searchable", lambda device: True)  # search as on a GPU
    return seen


def test_auto_batch_size_is_found_once_and_kept(base, monkeypatch):
    fixed = load_local_lm(str(base), device="cpu", batch_size=2)
    lm = load_local_lm(str(base), device="cpu", batch_size="auto")
    seen = oom_above(lm, 6, monkeypatch)
    reqs = [(f"context number {i} " * (i + 1), opt) for i in range(7) for opt in ("yes", "no, not at all")]
    assert lm.loglikelihood(reqs) == pytest.approx(fixed.loglikelihood(reqs), abs=1e-4)
    # probes: n contexts, then their 2n options in passes of n rows; 8 contexts ran out, so 4 per batch
    assert lm.batch_size == 4 and lm.describe()["batch_size"] == 4 and lm.describe()["batch_size_auto"]
    assert max(seen) == 8 and seen.count(8) == 1
    same = load_local_lm(str(base), device="cpu", batch_size=4)
    same.loglikelihood(reqs)
    assert lm.usage == same.usage  # the probes' tokens are not counted
    seen.clear()
    lm.loglikelihood(reqs)  # kept: no new search
    assert max(seen) <= 4

    gen = load_local_lm(str(base), device="cpu", batch_size="auto")
    oom_above(gen, 3, monkeypatch)
    cfg = GenerationConfig(max_new_tokens=4)
    assert gen.generate(PROMPTS, cfg) == fixed.generate(PROMPTS, cfg) and gen.batch_size == 2


def test_auto_batch_size_on_a_cpu_is_the_default_and_recorded(base, tmp_path):
    s = EvalSettings(model=str(base), mode="base", tasks=["NLI"], limit=2, batch_size="auto", device_map="auto")
    metrics = evaluate(s, tmp_path / "run", progress=False)
    assert metrics["backend"]["batch_size"] == local.CPU_AUTO_BATCH and metrics["backend"]["batch_size_auto"]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["device_map"] == "auto" and config["batch_size"] == "auto" and metrics["n_done"] == 2


def test_generation_sorts_by_length_and_returns_the_input_order(base):
    lm = load_local_lm(str(base), device="cpu", batch_size=2)
    cfg = GenerationConfig(max_new_tokens=6)
    order = []
    batched = lm.generate(PROMPTS, cfg, on_result=lambda i, text: order.append((i, text)))
    alone = [lm.generate([p], cfg)[0] for p in PROMPTS]
    assert batched == alone
    lengths = [len(lm.tokenizer(p).input_ids) for p in PROMPTS]
    assert [i for i, _ in order] == sorted(range(len(PROMPTS)), key=lambda i: -lengths[i])  # longest first
    assert all(batched[i] == text for i, text in order)
    assert lm.generate([], cfg) == []


def test_cli_refuses_bad_model_input_before_writing(base, adapter, tmp_path, capsys, monkeypatch):
    foreign = make_adapter(tiny_llama_folder(hidden=32), tmp_path / "foreign")
    capsys.readouterr()  # warnings printed while making it
    out = tmp_path / "run"
    cases = [
        (["--model", str(base), "--peft", str(foreign)], "was made for base model"),
        (["--model", "no-org/no-such-model"], "'no-org/no-such-model' is not a local folder and not in the local"),
        (["--model", str(base), "--base-url", "http://127.0.0.1:9/v1", "--peft", str(adapter)], "apply to local"),
        (["--model", str(base), "--device-map", "auto", "--device", "cpu"], "drop --device cpu"),
        (["--model", str(base), "--batch-size", "0"], "--batch-size: got '0', should be a positive integer or 'auto'"),
    ]
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    for args, expected in cases:
        with pytest.raises(SystemExit) as e:
            run_app(app, ["eval", *args, "--mode", "base", "--limit", "1", "--out", str(out)])
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and err.count("\n") == 0 and expected in err, err
        assert not out.exists()


def test_unsupported_bf16_is_refused_before_writing(base, tmp_path, monkeypatch):
    import distillkit.devices

    monkeypatch.setattr(distillkit.devices, "bf16_supported", lambda device: False)
    with pytest.raises(UserError, match="bf16 needs bfloat16 support, which cpu lacks"):
        evaluate(EvalSettings(model=str(base), mode="base", dtype="bf16", device="cpu"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_resume_with_a_changed_adapter_is_refused(base, tmp_path, capsys):
    adapter = make_adapter(base, tmp_path / "adapter")
    out = tmp_path / "run"
    argv = ["eval", "--model", str(base), "--peft", str(adapter), "--mode", "base", "--tasks", "NLI"]
    argv += ["--limit", "1", "--device", "cpu", "--out", str(out)]
    run_app(app, argv)
    first = json.loads((out / "metrics.json").read_text())
    assert first["n_done"] == 1 and first["backend"]["adapter"]["path"] == str(adapter.resolve())
    make_adapter(base, adapter, seed=5)  # new weights in the same folder
    with pytest.raises(SystemExit) as e:
        run_app(app, argv)
    assert e.value.code == 2 and "differs in: model_identity" in capsys.readouterr().err
    assert math.isfinite(first["overall"])
