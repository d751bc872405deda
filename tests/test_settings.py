"""Settings as data: presets, the published tables, --config / --set / --print-config on every command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from distillkit.cli.common import run_app
from distillkit.errors import UserError

# APM's Table A9 (spec apm.md section 2.4), typed in by hand from the spec, independently of the shipped YAML:
# (dataset, IPC): (network, lr_img, lr_net, E, evaluation epochs, T, ZCA, B_syn (None = C*IPC), B_seg (None = B_syn))
TABLE_A9 = {
    ("cifar10", 50): ("convnet", 1, 0.02, 250, 1000, 2500, True, None, None),
    ("cifar10", 500): ("convnet", 1, 0.02, 250, 1000, 2500, True, 2500, None),
    ("cifar10", 1000): ("convnet", 1, 0.02, 250, 600, 2500, True, 2500, None),
    ("cifar100", 10): ("convnet", 1, 0.02, 250, 1000, 2500, True, None, None),
    ("cifar100", 50): ("convnet", 1, 0.04, 250, 1000, 2500, True, 2500, None),
    ("cifar100", 100): ("convnet", 1, 0.04, 250, 600, 2500, True, 2500, None),
    ("tiny_imagenet", 10): ("convnetd4", 20, 0.1, 250, 1000, 2500, False, 500, 100),
    ("tiny_imagenet", 50): ("convnetd4", 40, 0.1, 250, 1000, 2500, False, 500, 100),
    ("tiny_imagenet", 100): ("convnetd4", 40, 0.1, 250, 600, 2500, False, 500, 100),
    ("imagenet_1k", 10): ("convnetd4", 20, 0.1, 250, 1000, 2500, False, 500, None),
    ("imagenet_1k", 50): ("convnetd4", 20, 0.1, 250, 600, 2500, False, 500, None),
    ("imagenet_1k", 100): ("convnetd4", 20, 0.1, 250, 600, 2500, False, 500, None),
}


def _resolved(cfg) -> tuple:
    a = cfg.apm
    return (
        cfg.teacher.arch,
        a.lr_img,
        a.lr_net,
        a.student_epochs,
        cfg.eval.epochs,
        a.iterations,
        cfg.data.zca,
        a.batch_syn,
        a.segment_size,
    )


@pytest.mark.parametrize(("dataset", "ipc"), sorted(TABLE_A9))
def test_paper_preset_equals_table_a9_row(dataset, ipc):
    from distillkit.image.pipeline import make_config

    cfg = make_config("paper", {"data": {"dataset": dataset}, "apm": {"ipc": ipc}})
    assert _resolved(cfg) == TABLE_A9[(dataset, ipc)]
    assert cfg.eval.arch == cfg.teacher.arch  # students are evaluated on the row's network
    assert (cfg.apm.alpha_ce, cfg.apm.refresh_every, cfg.apm.num_checkpoints) == (0.1, 3, 5)  # common to all rows
    assert cfg.paper_row.startswith(f"Table A9 {dataset} IPC {ipc} (")


def test_an_ipc_outside_the_table_uses_a_documented_row_and_says_which():
    from distillkit.image.pipeline import make_config

    below = make_config("paper", {"data": {"dataset": "cifar10"}, "apm": {"ipc": 10}})
    assert _resolved(below) == TABLE_A9[("cifar10", 50)]  # below every row: the smallest
    assert below.paper_row == "Table A9 cifar10 IPC 50 (ConvNet, depth 3; IPC 10 is not in the table)"
    between = make_config("paper", {"data": {"dataset": "tiny"}, "apm": {"ipc": 70}})  # an alias of tiny_imagenet
    assert _resolved(between) == TABLE_A9[("tiny_imagenet", 50)]  # the largest tabled IPC below
    other = make_config("paper", {"data": {"dataset": "digits"}, "apm": {"ipc": 10}})
    assert other.paper_row.startswith("none: dataset not in Table A9")
    assert (other.apm.lr_img, other.apm.lr_net, other.teacher.arch, other.data.zca) == (1.0, 0.02, "convnet", False)


def test_the_row_sits_under_config_set_and_flags():
    from distillkit.image.pipeline import make_config

    cfg = make_config("paper", {"data": {"dataset": "tiny_imagenet"}, "apm": {"ipc": 50, "lr_img": 7.0}})
    assert (cfg.apm.lr_img, cfg.apm.segment_size) == (7.0, 100)


# MTT's hyper-parameter table (Cazenavette et al. 2022; the per-setting commands the authors gave DC-BENCH), typed
# in by hand independently of the shipped YAML: (dataset, IPC): (network, N, M, T+, lr_img, lr_lr, initial step
# size, B_syn (None = all images), ZCA)
MTT_TABLE = {
    ("cifar10", 1): ("ConvNet", 50, 2, 2, 100, 1e-7, 0.01, None, True),
    ("cifar10", 10): ("ConvNet", 30, 2, 20, 100, 1e-5, 0.001, None, True),
    ("cifar10", 50): ("ConvNet", 30, 2, 40, 1000, 1e-5, 0.001, None, False),
    ("cifar100", 1): ("ConvNet", 20, 3, 20, 1000, 1e-5, 0.01, None, True),
    ("cifar100", 10): ("ConvNet", 20, 2, 20, 1000, 1e-5, 0.01, None, False),
    ("cifar100", 50): ("ConvNet", 80, 2, 40, 1000, 1e-5, 0.01, 125, True),
    ("tiny_imagenet", 1): ("ConvNetD4", 10, 2, 10, 10000, 1e-4, 0.01, None, False),
    ("tiny_imagenet", 10): ("ConvNetD4", 20, 2, 40, 10000, 1e-4, 0.01, 200, False),
    ("tiny_imagenet", 50): ("ConvNetD4", 20, 2, 40, 10000, 1e-4, 0.01, 300, False),
}


def _compare(dataset: str, ipcs: list[int], **sections):
    from distillkit.image.compare import make_compare_config

    return make_compare_config("paper", {"data": {"dataset": dataset}, "ipcs": ipcs, **sections})


def _mtt(cfg) -> tuple:
    m = cfg.mtt
    return (m.syn_steps, m.expert_epochs, m.max_start_epoch, m.lr_img, m.lr_lr, m.syn_lr_init, m.batch_syn)


@pytest.mark.parametrize(("dataset", "ipc"), sorted(MTT_TABLE))
def test_compare_paper_preset_equals_the_mtt_table_row(dataset, ipc):
    model, *values, zca = MTT_TABLE[(dataset, ipc)]
    cfg = _compare(dataset, [ipc], data={"dataset": dataset, "zca": zca})
    assert _mtt(cfg) == tuple(values)
    assert cfg.baseline_rows["mtt"] == f"MTT table {dataset} IPC {ipc} ({model}, ZCA {'on' if zca else 'off'})"
    assert cfg.experts.arch == {"ConvNet": "convnet", "ConvNetD4": "convnetd4"}[model]  # MTT's network, via Table A9
    assert (cfg.mtt.iterations, cfg.experts.num_experts, cfg.experts.epochs) == (5000, 100, 50)  # common to all
    assert cfg.mtt.max_start_epoch - 1 + cfg.mtt.expert_epochs <= cfg.experts.epochs  # the experts are long enough


def test_mtt_and_dm_rows_outside_their_tables_say_which_row_they_use():
    above = _compare("cifar10", [1, 100])  # one MTT section for all IPCs: the largest IPC's row
    assert _mtt(above) == MTT_TABLE[("cifar10", 50)][1:-1]
    assert above.baseline_rows["mtt"] == (
        "MTT table cifar10 IPC 50 (ConvNet, ZCA off; the data has ZCA on, shared by every method; "
        "IPC 100 is not in the table)"
    )
    assert (above.dm.lr_img, above.baseline_rows["dm"]) == (10.0, "DM README cifar10 IPC 100 (lr_img 10)")
    below = _compare("tiny", [5])  # an alias of tiny_imagenet, between IPC 1 and 10
    assert _mtt(below) == MTT_TABLE[("tiny_imagenet", 1)][1:-1]
    assert below.baseline_rows["dm"] == "none: dataset not in DM's table, lr_img 1"
    assert _compare("cifar100", [1000]).dm.lr_img == 1.0
    other = _compare("digits", [10])
    assert other.baseline_rows["mtt"].startswith("none: dataset not in MTT's table")
    from distillkit.image.mtt import MTTConfig

    assert other.mtt.model_dump(exclude={"iterations"}) == MTTConfig().model_dump(exclude={"iterations"})
    assert _compare("cifar10", [10], mtt={"syn_steps": 7}, dm={"lr_img": 3.0}).mtt.syn_steps == 7  # --set wins
    assert _compare("cifar10", [10], dm={"lr_img": 3.0}).dm.lr_img == 3.0
    from distillkit.image.compare import make_compare_config

    assert make_compare_config("quick", {"data": {"dataset": "cifar10"}}).baseline_rows is None


# DialogBench's published protocol (spec dialogbench.md 2.4, 2.7 and quirk 1), typed in from the spec:
DIALOGBENCH_EVAL = {
    "prompts": "official",  # the release's prompts, as the published runs sent them
    "extractor": "original",  # the reference's answer cascade
    "norm": "token",  # per-token perplexity of the option's content
    "max_new_tokens": 256,  # the paper (the reference code has 128)
    "max_length": 2048,  # left truncation to 2,048 tokens
    "circular": False,
    "gold_swap": False,
}
DIALOGBENCH_GENERATE = {
    "n_options": 4,
    "domain_balance": True,
    "style_mix": True,
    "position_balance": True,
    "judge": True,
    "temperature": 1.0,
    "presence_penalty": 0.6,
    "prompt_min_turns": 10,
}


def test_dialogbench_paper_preset_is_the_published_protocol(capsys, tmp_path):
    from distillkit.dialogbench.evaluate import EvalSettings
    from distillkit.dialogbench.generate.settings import GenSettings

    out = str(tmp_path / "gen")
    ev = _print_config(capsys, "dialogbench", "eval", "--preset", "paper", "--model", "m")
    assert {k: ev[k] for k in DIALOGBENCH_EVAL} == DIALOGBENCH_EVAL and ev["preset"] == "paper"
    gen = _print_config(capsys, "dialogbench", "generate", "--preset", "paper", "--llm", "x", "--out", out)
    assert {k: gen[k] for k in DIALOGBENCH_GENERATE} == DIALOGBENCH_GENERATE and len(gen["domains"]) == 20
    default = _print_config(capsys, "dialogbench", "eval", "--model", "m")
    assert default == EvalSettings(model="m", tasks=default["tasks"]).saved()  # no preset: the settings' defaults
    assert _print_config(capsys, "dialogbench", "generate", "--preset", "default", "--llm", "x", "--out", out) == (
        GenSettings(**{k: gen[k] for k in ("llm", "tasks", "domains")}).saved()
    )
    typed = _print_config(capsys, "dialogbench", "eval", "--preset", "paper", "--model", "m", "--extractor", "lenient")
    assert (typed["extractor"], typed["prompts"]) == ("lenient", "official")  # a typed flag wins over the preset
    saved = tmp_path / "config.json"
    saved.write_text(json.dumps(ev | {"max_length": 99}))
    again = _print_config(capsys, "dialogbench", "eval", "--config", str(saved))  # the preset the file names
    assert again == ev | {"max_length": 99}
    assert not Path(out).exists()


def test_a_dialogbench_run_resumes_under_another_preset_name_only_with_the_same_settings(tmp_path):
    from distillkit.dialogbench.evaluate import RESUMABLE, EvalSettings
    from distillkit.runs import prepare_run_dir

    paper = EvalSettings(model="m", extractor="original", prompts="official", preset="paper").saved()
    prepare_run_dir(tmp_path, paper, RESUMABLE)
    prepare_run_dir(tmp_path, paper | {"preset": "default"}, RESUMABLE)  # the same settings, typed out
    with pytest.raises(UserError, match="differs in: extractor, prompts"):
        prepare_run_dir(tmp_path, EvalSettings(model="m").saved(), RESUMABLE)


def _cli(program: str, args: list[str]) -> None:
    if program == "distill":
        from distillkit.cli.distill import app, register_systems

        run_app(app, args, setup=register_systems)
    else:
        from distillkit.cli.dialogbench import app

        run_app(app, args)


def _print_config(capsys, program: str, *args: str) -> dict:
    _cli(program, [*args, "--print-config"])
    return yaml.safe_load(capsys.readouterr().out)


def test_print_config_shows_the_published_settings_without_touching_anything(capsys, tmp_path):
    out = tmp_path / "run"
    run = ["image", "run", "--preset", "paper", "--out", str(out)]
    tiny = _print_config(capsys, "distill", *run, "--dataset", "tiny_imagenet", "--ipc", "50")
    assert tiny["teacher"]["arch"] == tiny["eval"]["arch"] == "convnetd4"
    assert "depth 4" in tiny["paper_row"]
    assert (tiny["apm"]["lr_img"], tiny["apm"]["lr_net"], tiny["apm"]["batch_syn"]) == (40.0, 0.1, 500)
    assert tiny["apm"]["segment_size"] == 100
    cifar = _print_config(capsys, "distill", *run, "--dataset", "cifar10", "--ipc", "50")
    assert (cifar["data"]["zca"], cifar["apm"]["lr_img"], cifar["apm"]["batch_syn"]) == (True, 1.0, None)
    assert not out.exists()  # no data was read (CIFAR-10 is not on this machine) and nothing was written


def test_compare_paper_uses_the_row_for_every_method_and_the_published_baselines(capsys, tmp_path):
    out = str(tmp_path / "cmp")
    cfg = _print_config(capsys, "distill", "image", "compare", "--preset", "paper", "--dataset", "tiny_imagenet")
    cfg = _print_config(
        capsys, "distill", "image", "compare", "--preset", "paper", "--dataset", "tiny_imagenet", "--ipc", "10,50"
    )
    assert cfg["paper_row"].startswith("Table A9 tiny_imagenet IPC 50")
    assert cfg["dm"]["arch"] == cfg["experts"]["arch"] == cfg["teacher"]["arch"] == "convnetd4"
    assert (cfg["dm"]["iterations"], cfg["experts"]["num_experts"], cfg["mtt"]["iterations"]) == (20000, 100, 5000)
    assert not Path(out).exists()


def test_print_config_on_every_command(capsys, tmp_path):
    out = str(tmp_path / "o")
    teacher = _print_config(capsys, "distill", "image", "teacher", "--epochs", "3", "--width", "16", "--out", out)
    assert (teacher["teacher"]["epochs"], teacher["teacher"]["net_options"], teacher["device"]) == (
        3,
        {"width": 16},
        "auto",
    )
    experts = _print_config(capsys, "distill", "image", "experts", "--set", "experts.lr=0.02", "--out", out)
    assert (experts["experts"]["lr"], experts["experts"]["num_experts"]) == (0.02, 10)
    distill = _print_config(
        capsys, "distill", "image", "distill", "--teachers", out, "--set", "apm.segment_size=50", "--out", out
    )
    assert (distill["apm"]["segment_size"], distill["apm"]["iterations"]) == (50, 150)  # 150: the quick preset's
    evaluation = _print_config(capsys, "distill", "image", "eval", "missing.safetensors", "--runs", "2")
    assert (evaluation["eval"]["runs"], evaluation["baselines"]) == (2, True)
    tune = _print_config(capsys, "distill", "image", "tune", "--ipc", "3", "--out", out)
    assert (tune["full"]["runs"], tune["ipcs"]) == (0, [3])
    text = _print_config(capsys, "distill", "text", "run", "--preset", "paper", "--dataset", "qqp", "--out", out)
    assert (text["generator"], text["learner"], text["max_length"], text["gm"]["real_batch"]) == (
        "gpt2",
        "bert-base-uncased",
        313,
        100,
    )
    assert (text["finetune"]["steps"], text["finetune"]["warmup_ratio"], text["finetune"]["lr"]) == (200, 0.5, 1e-4)
    text_eval = _print_config(capsys, "distill", "text", "eval", "--set-path", out, "--steps", "7")
    assert (text_eval["steps"], text_eval["device"]) == (7, "auto")
    gen = _print_config(capsys, "distill", "text", "generate", "--generator", out, "--dpc", "3", "--out", out)
    assert (gen["dpc"], gen["oversample"]) == (3, 100)
    icl = _print_config(capsys, "distill", "text", "icl", "--set-path", out, "--set", "shots_per_class=4")
    assert icl["shots_per_class"] == 4
    db = _print_config(capsys, "dialogbench", "eval", "--model", "m", "--tasks", "SF", "--set", "max_length=4096")
    assert (db["tasks"], db["max_length"], db["device"]) == (["SF"], 4096, "auto")
    gen = _print_config(
        capsys, "dialogbench", "generate", "--llm", "x", "--per-task", "30", "--round", "up", "--out", out
    )
    assert (gen["per_task"], gen["requested_per_task"]) == (40, 30)
    assert not Path(out).exists()


BAD_SETTINGS = [
    ("distill", "image run --set apm.nope=1", "unknown setting apm.nope (given 1); known here: alpha_ce"),
    ("distill", "image teacher --set teacher.epochs=x", "teacher.epochs: got 'x', should be a valid integer"),
    ("distill", "image experts --set experts.lr=-1", "experts.lr: got -1, should be greater than 0"),
    ("distill", "image distill --teachers . --set apm.discrepancy=l3", "apm.discrepancy: got 'l3', should be 'l1'"),
    ("distill", "image distill --teachers . --set lr_img=3", "write --set apm.lr_img=3"),
    ("distill", "image eval x.safetensors --set eval.nope=1", "unknown setting eval.nope (given 1)"),
    ("distill", 'image compare --set methods=["nope"]', "unknown method 'nope'"),
    ("distill", "image tune --set dm.lr_img=0", "dm.lr_img: got 0, should be greater than 0"),
    ("distill", "text run --out o --set gm.nope=1", "unknown setting gm.nope (given 1); known here: checkpoint_every"),
    ("distill", "text run --out o --set finetune.steps=x", "finetune.steps: got 'x', should be a valid integer"),
    ("distill", "text eval --set-path . --set runs=0", "runs: got 0, should be greater than or equal to 1"),
    ("distill", "text generate --generator . --out o --set nope=1", "unknown setting nope (given 1)"),
    ("distill", "text icl --set-path . --set max_tokens=x", "max_tokens: got 'x', should be a valid integer"),
    ("dialogbench", "eval --model m --set norm=foo", "norm: got 'foo', should be 'token', 'sum' or 'char'"),
    ("dialogbench", "eval --model m --set nope=1", "unknown setting nope (given 1); known here: backend"),
    ("dialogbench", "generate --llm x --out o --set temperature=hot", "temperature: got 'hot', should be a valid"),
    ("distill", "image run --preset nope", "unknown preset 'nope'; choose one of paper, quick, standard"),
    ("distill", "text run --out o --preset nope", "unknown preset 'nope'; choose one of demo, paper, quick"),
    ("dialogbench", "eval --model m --preset nope", "unknown preset 'nope'; choose one of default, paper"),
]


@pytest.mark.parametrize(("program", "args", "expected"), BAD_SETTINGS)
def test_a_bad_key_or_value_is_one_line_on_every_command(capsys, tmp_path, monkeypatch, program, args, expected):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        _cli(program, [*args.split(), "--print-config"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_a_run_config_given_back_resolves_to_the_same_job(capsys, tmp_path):
    from distillkit.image.pipeline import make_config
    from distillkit.runs import prepare_run_dir
    from distillkit.settings import resolve_with_preset

    flags = {"data.dataset": ("--dataset", "digits"), "apm.ipc": ("--ipc", 3)}
    cfg = resolve_with_preset(
        make_config, "standard", None, ["apm.alpha_ce=0.3", 'eval.net_options={"width": 8}'], flags
    )
    run_dir = prepare_run_dir(tmp_path / "run", cfg.model_dump())  # what `distill image run` writes
    again = resolve_with_preset(make_config, None, run_dir / "config.json")  # the preset the file names: standard
    assert again == cfg
    prepare_run_dir(run_dir, again.model_dump())  # the same job: resuming it is accepted
    printed = _print_config(capsys, "distill", "image", "run", "--config", str(run_dir / "config.json"))
    assert printed == json.loads((run_dir / "config.json").read_text()) | {"device": "auto"}


def test_text_and_dialogbench_configs_round_trip(capsys, tmp_path):
    from distillkit.dialogbench.evaluate import EvalSettings
    from distillkit.text.api import resolve_text_config

    cfg = resolve_text_config("quick", None, ["gm.outer_loops=3", "dpcs=[2]"])
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg.model_dump()))
    assert resolve_text_config(None, path) == cfg
    saved = EvalSettings(model="m", tasks=["SF"], max_length=99).saved() | {"data_sha256": "x", "generation": {}}
    path.write_text(json.dumps(saved))
    printed = _print_config(capsys, "dialogbench", "eval", "--config", str(path))
    assert printed == EvalSettings(model="m", tasks=["SF"], max_length=99).saved()


def test_settings_loader_refuses_what_it_cannot_read(tmp_path):
    from distillkit.settings import load_preset, read_config_file, require_dotted

    with pytest.raises(UserError, match="unknown preset 'x'; choose one of paper, quick, standard"):
        load_preset("image", "x")
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n")
    with pytest.raises(UserError, match="must hold a mapping"):
        read_config_file(listed)
    with pytest.raises(UserError, match="names no section; write --set apm.ipc=3"):
        require_dotted(["ipc=3"], {"ipc": "apm"})
    require_dotted(["apm.ipc=3"], {"ipc": "apm"})  # the dotted form passes


def test_compare_builds_every_method_through_one_registry():
    from distillkit.image.compare import METHODS
    from distillkit.image.methods import BUILDERS, NEEDS_EXPERTS

    assert METHODS == ("apm", "mtt", "tesla", "dm", "herding", "kcenter", "random")
    assert set(BUILDERS) == set(METHODS) and NEEDS_EXPERTS == {"mtt", "tesla"}


def test_a_preset_that_extends_another_is_the_other_with_its_own_settings_over_it():
    from distillkit.settings import load_preset

    quick, demo = load_preset("text", "quick"), load_preset("text", "demo")
    assert "extends" not in demo and demo["generator"] == "smollm2" and quick["generator"] == "scratch-gpt2"
    assert demo["gm"] == {**quick["gm"], "lr": 0.0001}  # nested sections merge key by key
    own = ("generator", "lora", "generators_from", "stage1", "gm")
    assert {k: v for k, v in demo.items() if k not in own} == {k: v for k, v in quick.items() if k not in own}
