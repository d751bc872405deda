"""The parallel variant of APM (spec 2.3): G disjoint groups distilled independently, then concatenated.

`distill_groups` runs the groups of one set. Under torchrun (WORLD_SIZE > 1) rank r distils groups
r, r + W, ... (`distributed.share`); torch.distributed serves only for the rendezvous and the barriers,
after which rank 0 merges. In one process the groups run one after another. Each group writes
OUT/group_{g}/ (distilled.safetensors and apm_state.pt), so every group resumes on its own; the merged
set is OUT/distilled.safetensors, with grid.png and groups.json beside it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from distillkit.data.images import ImageData
from distillkit.distributed import barrier, is_main, process_group, share, world_size
from distillkit.errors import UserError
from distillkit.image.apm import APMConfig, distill
from distillkit.image.distilled import DistilledSet
from distillkit.image.groups import Group, check_groups
from distillkit.image.teacher import TeacherPool
from distillkit.plots import image_grid
from distillkit.runs import write_json


def _group_of(ds: DistilledSet, name: str) -> dict:
    group = ds.meta.get("group")
    if not isinstance(group, dict) or not {"index", "count", "split"} <= set(group):
        raise UserError(
            f"{name} is not the output of one APM group (no group in its metadata); "
            "merge the group_*/distilled.safetensors files of `distill image distill --groups G`"
        )
    return group


def merge_sets(sets: list[DistilledSet], names: list[str] | None = None) -> DistilledSet:
    """Concatenate the sets of distinct groups of one layout into one set, sorted by class (group order within).

    The sets must agree on dataset, classes, image shape, normalisation, ZCA, label teacher and APM config,
    and carry distinct group indices of the same group count and split; soft labels are kept. Any subset
    of the groups may be merged; the meta lists the groups merged and their seeds.
    """
    if not sets:
        raise UserError("nothing to merge; give at least one distilled-set file")
    names = names or [f"set {i}" for i in range(len(sets))]
    groups = [_group_of(ds, n) for ds, n in zip(sets, names, strict=True)]
    first, ref = sets[0], groups[0]
    for ds, g, name in zip(sets[1:], groups[1:], names[1:], strict=True):
        if (g["count"], g["split"]) != (ref["count"], ref["split"]):
            raise UserError(
                f"{name} is group {g['index']} of {g['count']} ({g['split']} split) but {names[0]} is "
                f"of {ref['count']} ({ref['split']} split); merge groups of one run only"
            )
        for key, what in [
            ("dataset", "dataset"),
            ("classes", "classes"),
            ("mean", "normalisation"),
            ("std", "normalisation"),
            ("label_teacher", "label teacher"),
            ("label_mode", "label mode"),
        ]:
            if ds.meta.get(key) != first.meta.get(key):
                raise UserError(
                    f"{name} differs from {names[0]} in {what} ({ds.meta.get(key)!r} vs "
                    f"{first.meta.get(key)!r}); merge groups of one run only"
                )
        if ds.images.shape[1:] != first.images.shape[1:]:
            raise UserError(
                f"{name} holds images of shape {tuple(ds.images.shape[1:])}, {names[0]} "
                f"{tuple(first.images.shape[1:])}; merge groups of one run only"
            )
        if (ds.soft_labels is None) != (first.soft_labels is None):
            raise UserError(f"{name} and {names[0]} differ in having soft labels; merge groups of one run only")
        same_zca = (ds.zca is None) == (first.zca is None) and (
            ds.zca is None or all(torch.equal(ds.zca[k], first.zca.get(k, torch.empty(0))) for k in ds.zca)
        )
        if not same_zca:
            raise UserError(f"{name} was whitened with another ZCA than {names[0]}; merge groups of one run only")
        mine, theirs = ds.meta.get("apm_config") or {}, first.meta.get("apm_config") or {}
        if mine != theirs:
            diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            raise UserError(
                f"{name} was distilled with another APM config than {names[0]} (differs in: "
                f"{', '.join(diff)}); merge groups of one run only"
            )
    seen: dict[int, str] = {}
    for g, name in zip(groups, names, strict=True):
        if g["index"] in seen:
            raise UserError(f"group {g['index']} appears twice ({seen[g['index']]} and {name}); give each group once")
        seen[g["index"]] = name
    order = sorted(range(len(sets)), key=lambda i: groups[i]["index"])
    images = torch.cat([sets[i].images for i in order])
    labels = torch.cat([sets[i].labels for i in order])
    soft = None if first.soft_labels is None else torch.cat([sets[i].soft_labels for i in order])
    by_class = torch.sort(labels, stable=True).indices
    images, labels = images[by_class], labels[by_class]
    soft = None if soft is None else soft[by_class]
    counts = torch.bincount(labels, minlength=len(first.meta.get("classes") or [])).tolist()
    present = {c for c in counts if c}
    meta = {k: v for k, v in first.meta.items() if k not in {"group", "distill_seconds"}}
    meta.update(
        {
            "ipc": present.pop() if len(present) == 1 else None,
            "class_counts": counts,
            "group_count": ref["count"],
            "group_split": ref["split"],
            "groups": [
                {
                    "index": groups[i]["index"],
                    "seed": groups[i].get("seed"),
                    "n_images": len(sets[i].labels),
                    "classes": groups[i].get("classes"),
                    "ipc_range": groups[i].get("ipc_range"),
                    "distill_seconds": sets[i].meta.get("distill_seconds"),
                }
                for i in order
            ],
            "distill_seconds": sum(sets[i].meta.get("distill_seconds") or 0.0 for i in order),
        }
    )
    return DistilledSet(images, labels, soft, meta, first.zca)


def merge_files(files: list[Path], out: Path) -> tuple[DistilledSet, Path]:
    """Merge group files into `out` and draw the grid beside it (OUT_STEM_grid.png); return the set and grid."""
    files = [Path(f) for f in files]
    merged = merge_sets([DistilledSet.load(f) for f in files], [str(f) for f in files])
    out = Path(out)
    merged.save(out)
    classes = merged.meta.get("classes") or [str(c) for c in range(int(merged.labels.max()) + 1)]
    grid = image_grid(merged.pixels(), merged.labels, classes, out.with_name(out.stem + "_grid.png"))
    return merged, grid


def _distill_group(
    data: ImageData, pool: TeacherPool, cfg: APMConfig, group: Group, out: Path, device: torch.device
) -> DistilledSet:
    """One group into OUT/group_{g}/ (a finished group is loaded, after checking it is this group)."""
    gdir = out / f"group_{group.index}"
    path = gdir / "distilled.safetensors"
    if path.exists():
        ds = DistilledSet.load(path)
        got = {k: (ds.meta.get("group") or {}).get(k) for k in ("index", "count", "split")}
        if got != group.as_dict() or ds.meta.get("apm_config") != cfg.model_dump():
            raise UserError(
                f"{path} was distilled with other settings (group {got}); use the same settings "
                "or a new --out directory"
            )
        return ds
    ds = distill(data, pool, cfg, gdir, device, group=group)
    ds.save(path)
    return ds


def distill_groups(
    data: ImageData,
    pool: TeacherPool,
    cfg: APMConfig,
    out: Path,
    num_groups: int,
    split: str = "ipc",
    device: str | torch.device = "cpu",
) -> DistilledSet | None:
    """Distil `num_groups` groups of the set (split "ipc" or "classes") into OUT and merge them.

    The pool's networks move to the process's device (load them on the CPU to keep other GPUs free).
    Returns the merged set in one process and on rank 0 under torchrun, None on the other ranks.
    """
    check_groups(num_groups, split, cfg.ipc, data.num_classes)
    out = Path(out)
    with process_group(device) as dev:
        out.mkdir(parents=True, exist_ok=True)
        pool = pool.to(dev)  # each torchrun process on its own GPU
        for g in share(range(num_groups)):
            _distill_group(data, pool, cfg, Group(g, num_groups, split), out, dev)
        barrier()
        if not is_main():
            return None
        world = world_size()
        files = [out / f"group_{g}" / "distilled.safetensors" for g in range(num_groups)]
        merged = merge_sets([DistilledSet.load(f) for f in files], [str(f) for f in files])
        merged.save(out / "distilled.safetensors")
        image_grid(data.denormalise(merged.images), merged.labels, data.classes, out / "grid.png")
        write_json(
            out / "groups.json",
            {
                "num_groups": num_groups,
                "split": split,
                "world_size": world,
                "seed": cfg.seed,
                "merged": "distilled.safetensors",
                "n_images": len(merged.labels),
                "class_counts": merged.meta["class_counts"],
                "groups": [
                    {**g, "dir": f"group_{g['index']}", "rank": g["index"] % world} for g in merged.meta["groups"]
                ],
            },
        )
        return merged
