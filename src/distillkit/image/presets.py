"""The image presets (YAML files under distillkit/presets/image and presets/compare) and the published tables.

`--preset paper` is the published defaults (presets/image/paper.yaml) with the Table A9 row of the dataset and
IPC on top (presets/image/tables/apm_table_a9.yaml); `distill image compare --preset paper` adds the rows of
MTT's hyper-parameter table and of DM's image learning rates (presets/compare/tables/). An IPC outside a table
uses a documented nearby row, and the resolved config names every row it used.
"""

from __future__ import annotations

from typing import Any

from distillkit.data.images import canonical_name
from distillkit.errors import UserError
from distillkit.settings import load_preset, load_table, merge_settings

PAPER = "paper"


def image_preset(name: str) -> dict[str, Any]:
    """The settings of `distill image run --preset NAME` (without any Table A9 row)."""
    return load_preset("image", name)


def compare_preset(name: str) -> dict[str, Any]:
    """The settings of `distill image compare --preset NAME`: the image preset plus DM, MTT and expert settings."""
    base = image_preset(name)
    return merge_settings(base, load_preset("compare", name))


def table_a9() -> list[dict[str, Any]]:
    """APM's Table A9 as shipped: one dict per row, columns as in the paper."""
    return load_table("image", "apm_table_a9")["rows"]


def _dataset_key(dataset: str) -> str:
    """The registry name of `dataset` (aliases resolved); a name outside the registry, lower-cased."""
    try:
        return canonical_name(dataset)
    except UserError:
        return dataset.lower().replace("-", "_")


def mtt_table() -> list[dict[str, Any]]:
    """MTT's hyper-parameter table as shipped: one dict per dataset and IPC."""
    return load_table("compare", "mtt_hyperparameters")["rows"]


def dm_table() -> list[dict[str, Any]]:
    """DM's published image learning rate per dataset and IPC, as shipped."""
    return load_table("compare", "dm_lr_img")["rows"]


def table_row(rows: list[dict[str, Any]], dataset: str, ipc: int) -> dict[str, Any] | None:
    """The row of `rows` for `dataset` at `ipc`: the exact IPC, else the largest tabled IPC below it, else the
    smallest; None for a dataset the table does not cover."""
    rows = sorted((r for r in rows if r["dataset"] == _dataset_key(dataset)), key=lambda r: r["ipc"])
    if not rows:
        return None
    below = [r for r in rows if r["ipc"] <= ipc]
    return below[-1] if below else rows[0]


def paper_row(dataset: str, ipc: int) -> dict[str, Any] | None:
    """The Table A9 row for `dataset` at `ipc` (see `table_row`)."""
    return table_row(table_a9(), dataset, ipc)


def _not_tabled(row: dict[str, Any], ipc: int) -> str:
    return "" if row["ipc"] == ipc else f"; IPC {ipc} is not in the table"


def row_label(row: dict[str, Any] | None, ipc: int) -> str:
    """How a resolved config names the Table A9 row it used."""
    if row is None:
        return "none: dataset not in Table A9, the common published defaults"
    depth = 4 if row["model"].lower().endswith("d4") else 3
    return f"Table A9 {row['dataset']} IPC {row['ipc']} ({row['model']}, depth {depth}{_not_tabled(row, ipc)})"


def _batch_syn(value: int | str) -> int | None:
    """A table's synthetic batch: "full" (every image: None) or a count."""
    return None if value == "full" else int(value)


def row_settings(row: dict[str, Any]) -> dict[str, Any]:
    """A Table A9 row as nested settings of the image system."""
    segment = None if row["segment"] == "batch_syn" else int(row["segment"])
    return {
        "data": {"zca": bool(row["zca"])},
        "teacher": {"arch": row["model"].lower()},
        "apm": {
            "lr_img": float(row["lr_img"]),
            "lr_net": float(row["lr_net"]),
            "student_epochs": int(row["s_epoch"]),
            "iterations": int(row["iteration"]),
            "batch_syn": _batch_syn(row["batch_syn"]),
            "segment_size": segment,
            "alpha_ce": float(row["ce"]),
            "refresh_every": int(row["mid_gap"]) + 1,
        },
        "eval": {"epochs": int(row["epoch_eval_train"])},
    }


def mtt_settings(row: dict[str, Any]) -> dict[str, Any]:
    """A row of MTT's table as MTT settings (MTTConfig's names; lr_teacher is the initial step size)."""
    return {
        "syn_steps": int(row["syn_steps"]),
        "expert_epochs": int(row["expert_epochs"]),
        "max_start_epoch": int(row["max_start_epoch"]),
        "lr_img": float(row["lr_img"]),
        "lr_lr": float(row["lr_lr"]),
        "syn_lr_init": float(row["lr_teacher"]),
        "batch_syn": _batch_syn(row["batch_syn"]),
    }


def mtt_label(row: dict[str, Any] | None, ipc: int, zca: bool) -> str:
    """How a resolved config names the row of MTT's table it used, and a ZCA setting that differs from it."""
    if row is None:
        return "none: dataset not in MTT's table, MTTConfig's defaults (its CIFAR-10 IPC 10 row)"
    on = {True: "on", False: "off"}
    notes = f"ZCA {on[bool(row['zca'])]}"
    if bool(row["zca"]) != zca:
        notes += f"; the data has ZCA {on[zca]}, shared by every method"
    return f"MTT table {row['dataset']} IPC {row['ipc']} ({row['model']}, {notes}{_not_tabled(row, ipc)})"


def dm_label(row: dict[str, Any] | None, ipc: int) -> str:
    """How a resolved config names the row of DM's learning-rate table it used."""
    if row is None:
        return "none: dataset not in DM's table, lr_img 1"
    return f"DM README {row['dataset']} IPC {row['ipc']} (lr_img {row['lr_img']}{_not_tabled(row, ipc)})"


def with_compare_rows(base: dict[str, Any], dataset: str, ipc: int, overrides: dict[str, Any]) -> dict[str, Any]:
    """The compare paper preset `base` with, for `dataset` and `ipc`, the Table A9 row (APM, shared data and
    networks), MTT's row and DM's row on top; `paper_row` and `baseline_rows` name them. `overrides` (the config
    file, --set items and flags, applied later over all of this) tell which ZCA setting the data will have."""
    settings = with_paper_row(base, dataset, ipc)
    zca = bool(overrides.get("data", {}).get("zca", settings.get("data", {}).get("zca", False)))
    mtt, dm = table_row(mtt_table(), dataset, ipc), table_row(dm_table(), dataset, ipc)
    if mtt is not None:
        settings = merge_settings(settings, {"mtt": mtt_settings(mtt)})
    if dm is not None:
        settings = merge_settings(settings, {"dm": {"lr_img": float(dm["lr_img"])}})
    return {**settings, "baseline_rows": {"mtt": mtt_label(mtt, ipc, zca), "dm": dm_label(dm, ipc)}}


def with_paper_row(base: dict[str, Any], dataset: str, ipc: int) -> dict[str, Any]:
    """`base` (the paper preset) with the Table A9 row of `dataset` and `ipc` on top, and `paper_row` naming it."""
    row = paper_row(dataset, ipc)
    settings = merge_settings(base, row_settings(row)) if row else dict(base)
    return {**settings, "paper_row": row_label(row, ipc)}


def distill_preset(name: str, settings: dict[str, Any]) -> dict[str, Any]:
    """`distill image distill`'s preset: the image preset's APM section; `paper` adds the Table A9 row's APM
    values and ZCA for the dataset and IPC in `settings` (the config file, --set items and flags)."""
    base = image_preset(name)
    if name != PAPER:
        return {"preset": name, "apm": base["apm"]}
    dataset = settings.get("data", {}).get("dataset", "mnist")
    ipc = settings.get("apm", {}).get("ipc")
    row = with_paper_row(base, str(dataset), ipc if isinstance(ipc, int) else 10)
    return {"preset": name, "paper_row": row["paper_row"], "apm": row["apm"], "data": row.get("data", {})}
