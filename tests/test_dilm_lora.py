"""LoRA generators: only the adapters and added token rows train, they save alone and load back to the same model."""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from distillkit.data.text import TextDataset
from distillkit.errors import UserError
from distillkit.text.generator import Generator, LoraSettings
from distillkit.text.stage1 import Stage1Config, train_stage1

TEXTS = [("tasty and fresh",), ("stale and bland",), ("great coffee",), ("broken lid",)] * 4


def lora_gen(seed: int = 0) -> Generator:
    return Generator.create("tiny-llama", 2, 1, max_length=16, seed=seed, lora=LoraSettings(r=4))


def trained(tmp_path) -> Generator:
    gen = lora_gen()
    data = TextDataset(texts=TEXTS, labels=[0, 1, 0, 1] * 4, label_names=["good", "bad"], text_fields=["text"])
    train_stage1(gen, data, Stage1Config(steps=4, batch_size=8, lr=1e-2, checkpoint_every=2), 0, tmp_path / "s1.pt")
    return gen


def test_only_adapters_and_added_token_rows_train(tmp_path):
    gen = lora_gen()
    base = {n: p.detach().clone() for n, p in gen.model.named_parameters() if not p.requires_grad}
    trainable = [n for n, p in gen.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "trainable_tokens_delta" in n for n in trainable)
    data = TextDataset(texts=TEXTS, labels=[0, 1, 0, 1] * 4, label_names=["good", "bad"], text_fields=["text"])
    train_stage1(gen, data, Stage1Config(steps=3, batch_size=8, lr=1e-2, checkpoint_every=10), 0)
    after = dict(gen.model.named_parameters())
    assert all(torch.equal(after[n].detach(), v) for n, v in base.items())
    rows, ids = gen.class_rows()
    assert rows.shape[0] == len(gen.class_ids) + 1  # the class tokens, then <sep> (this tokenizer has a pad)
    assert not torch.equal(rows[ids[0]], rows[ids[1]])  # the class tokens moved apart


def test_saved_lora_generator_is_small_and_loads_to_the_same_model(tmp_path):
    gen = trained(tmp_path)
    gen.save(tmp_path / "g")
    files = {p.name for p in (tmp_path / "g").iterdir()}
    assert "adapter_model.safetensors" in files and "model.safetensors" not in files
    adapter = (tmp_path / "g" / "adapter_model.safetensors").stat().st_size
    assert adapter < 0.1 * sum(p.numel() * 4 for p in gen.model.parameters())
    back = Generator.load(tmp_path / "g")
    gen.model.eval()
    back.model.eval()
    x = [("tasty and fresh",), ("broken lid",)]
    torch.testing.assert_close(back.per_sample_loss(x, [0, 1]), gen.per_sample_loss(x, [0, 1]))
    assert back.sample(1, 4, seed=3) == gen.sample(1, 4, seed=3)


def test_lora_stage1_checkpoints_the_adapter_and_resumes_to_the_same_one(tmp_path, monkeypatch):
    import distillkit.text.stage1 as stage1

    whole = trained(tmp_path / "a")
    save = stage1.save_checkpoint

    def killed_after_step_two(path, state):
        save(path, state)
        if state["step"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(stage1, "save_checkpoint", killed_after_step_two)
    with pytest.raises(KeyboardInterrupt):
        trained(tmp_path / "b")
    ckpt = torch.load(tmp_path / "b" / "s1.pt", weights_only=False)
    assert ckpt["step"] == 2 and all("lora_" in k or "trainable_tokens" in k for k in ckpt["model"])
    monkeypatch.setattr(stage1, "save_checkpoint", save)
    resumed = trained(tmp_path / "b")
    for (n, p), q in zip(whole.model.named_parameters(), resumed.model.parameters(), strict=True):
        if p.requires_grad:
            torch.testing.assert_close(p, q, rtol=0, atol=0, msg=n)


def test_class_token_lr_under_lora_scales_only_the_class_rows():
    def step(mult: float):
        g = lora_gen()
        rows, ids = g.class_rows()
        opt = torch.optim.AdamW([p for p in g.model.parameters() if p.requires_grad], lr=1e-3)
        before = rows.detach().clone()
        g.per_sample_loss([("good food",), ("bad food",)], [0, 1]).mean().backward()
        with g.class_token_lr(mult):
            opt.step()
        return before, rows.detach().clone(), ids

    before, plain, ids = step(1.0)
    _, boosted, _ = step(20.0)
    rest = [i for i in range(before.shape[0]) if i not in ids]
    assert (plain[ids] - before[ids]).abs().max() > 0
    torch.testing.assert_close(boosted[ids] - before[ids], 20.0 * (plain[ids] - before[ids]), rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(boosted[rest], plain[rest])


def test_lora_on_a_scratch_generator_or_missing_modules_is_one_clear_line():
    with pytest.raises(UserError, match="LoRA needs a pretrained generator"):
        Generator.create("scratch-gpt2", 2, texts=["a b"], lora=LoraSettings())
    with pytest.raises(UserError, match="LoRA settings do not fit"):
        Generator.create("tiny-llama", 2, lora=LoraSettings(target_modules=["no_such_layer"]))


def test_lora_weights_are_drawn_from_the_seed():
    a, b, c = lora_gen(0), lora_gen(0), lora_gen(1)
    pa, pb, pc = (dict(g.model.named_parameters()) for g in (a, b, c))
    name = next(n for n in pa if "lora_A" in n)
    assert torch.equal(pa[name], pb[name]) and not torch.equal(pa[name], pc[name])


def lora_run_config(**extra):
    from distillkit.text.api import build_config, tiny_overrides

    overrides = [
        *tiny_overrides(stage1_steps=2, outer_loops=1, full_runs=1, methods=["dilm", "vanilla_lm"]),
        'generator="tiny-llama"',
        'lora={"r": 4}',
        'checkpoint="last"',
        "num_sets=1",
        *(f"{k}={json.dumps(v)}" for k, v in extra.items()),
    ]
    return build_config("fine_foods", "quick", dpcs=[2], seed=0, overrides=overrides)


def test_a_run_uses_the_generators_it_is_given_instead_of_training(tmp_path):
    from distillkit.text.pipeline import run_dilm

    trained_here = run_dilm(lora_run_config(), tmp_path / "a", progress=False)
    given = run_dilm(lora_run_config(generators_from=str(tmp_path / "a")), tmp_path / "b", progress=False)
    assert (tmp_path / "a" / "generator_dilm" / "adapter_model.safetensors").exists()
    assert not (tmp_path / "b" / "generator_dilm").exists() and not (tmp_path / "b" / "ckpt" / "stage1.pt").exists()
    for method in ("dilm", "vanilla_lm"):
        a, b = (tmp_path / run / "sets" / method / "dpc2" / "set0" for run in ("a", "b"))
        assert (a / "texts.jsonl").read_text() == (b / "texts.jsonl").read_text()  # the same generator, same seeds
        prov = json.loads((b / "provenance.json").read_text())
        assert prov["generator_checkpoint"].startswith(str(tmp_path / "a"))
    key = "tiny-bert"
    assert given["learners"][key]["dilm"] == trained_here["learners"][key]["dilm"]
    with pytest.raises(UserError, match="generators_from: .* does not exist"):
        run_dilm(lora_run_config(generators_from=str(tmp_path / "nowhere")), tmp_path / "c", progress=False)


def test_the_shipped_demo_generators_are_what_the_demo_preset_says():
    from distillkit.runs import read_json
    from distillkit.text.config import preset_config
    from distillkit.text.demo import generator_line
    from distillkit.text.models import generators_dir

    cfg = preset_config("demo", "fine_foods")
    folder = generators_dir(cfg.generators_from)
    record = read_json(folder / "provenance.json")
    assert record["config"] == cfg.model_copy(update={"generators_from": None}).model_dump()
    assert record["stage2_validation"]["best"] in record["stage2_validation"]["scores"]
    assert len(record["stage1_losses"]) == cfg.stage1.steps
    assert record["stage1_losses"][-1] < record["stage1_losses"][0]
    for name in ("generator_vanilla", "generator_dilm"):
        assert (folder / name / "adapter_model.safetensors").stat().st_size < 5_000_000
    line = generator_line(cfg)  # what the demo report says of them
    assert f"chosen on validation: {record['stage2_validation']['best']})" in line
    assert f"trained ahead by `{record['built_by']}`" in line


def test_dilm_draws_the_plain_lms_pool_when_their_generators_are_the_same_files(tmp_path):
    import shutil

    from distillkit.text.pipeline import run_dilm

    run_dilm(lora_run_config(), tmp_path / "a", progress=False)
    same = tmp_path / "same"
    for name in ("generator_vanilla", "generator_dilm"):  # stage 2 kept step 0: DiLM's generator is stage 1's
        shutil.copytree(tmp_path / "a" / "generator_vanilla", same / name)
    m = run_dilm(lora_run_config(generators_from=str(same)), tmp_path / "b", progress=False)
    b = tmp_path / "b"
    assert sorted(p.name for p in (b / "pools").iterdir()) == ["vanilla_lm"]  # one pool generated, not two
    dilm, plain = (b / "sets" / method / "dpc2" / "set0" for method in ("dilm", "vanilla_lm"))
    assert (dilm / "texts.jsonl").read_text() == (plain / "texts.jsonl").read_text()
    assert json.loads((dilm / "provenance.json").read_text())["pool_of"] == "vanilla_lm"
    assert m["learners"]["tiny-bert"]["dilm"] == m["learners"]["tiny-bert"]["vanilla_lm"]
    a = tmp_path / "a"  # trained here, stage 2 kept its last step: its own generator, its own pool
    adapters = [(a / n / "adapter_model.safetensors").read_bytes() for n in ("generator_dilm", "generator_vanilla")]
    assert adapters[0] != adapters[1]
    assert sorted(p.name for p in (a / "pools").iterdir()) == ["dilm", "vanilla_lm"]
