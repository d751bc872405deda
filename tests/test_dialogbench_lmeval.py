"""The lm-evaluation-harness export loads in `lm-eval` and scores like our `sum` normalisation."""

from __future__ import annotations

import pytest

from distillkit.dialogbench.evaluate import EvalSettings, evaluate
from distillkit.dialogbench.lmeval_export import export_lm_eval
from distillkit.lm import load_local_lm
from distillkit.lm.offline import tiny_llama_folder


def test_export_loads_and_agrees_with_our_summed_likelihood(tmp_path):
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    files = export_lm_eval(tmp_path / "lme", data="sample", lang="en")
    assert len(files) == 25 and (tmp_path / "lme" / "dialogbench_en.yaml").exists()
    tm = TaskManager(include_path=str(tmp_path / "lme"))
    assert "dialogbench_en_sf" in tm.all_tasks and "dialogbench_en" in tm.all_tasks

    lm = load_local_lm(str(tiny_llama_folder()), device="cpu")
    tasks = ["SF", "RC", "OD"]
    ours = evaluate(
        EvalSettings(model="tiny", mode="base", tasks=tasks, norm="sum"), tmp_path / "run", progress=False, lm=lm
    )
    harness = HFLM(pretrained=lm.model, tokenizer=lm.tokenizer, batch_size=4, device="cpu")
    res = simple_evaluate(
        model=harness, tasks=[f"dialogbench_en_{t.lower()}" for t in tasks], task_manager=tm, log_samples=False
    )["results"]
    for t in tasks:
        assert 100 * res[f"dialogbench_en_{t.lower()}"]["acc,none"] == pytest.approx(
            ours["tasks"][t]["accuracy"], abs=0.01
        )
