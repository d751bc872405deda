"""Groups of the parallel APM variant (spec 2.3): disjoint parts of the synthetic set, each distilled on its own."""

from __future__ import annotations

from dataclasses import dataclass

from distillkit.errors import UserError
from distillkit.seeding import derive_seed

GROUP_SPLITS = ("ipc", "classes")


@dataclass(frozen=True)
class Group:
    """Group `index` of `count` in the parallel variant (spec 2.3): which part of the synthetic set it distils.

    split "ipc": every class, with chunk `index` of the class's IPC budget (chunk sizes differ by at most one);
    split "classes": classes index, index + count, ... with the full IPC.
    """

    index: int
    count: int
    split: str = "ipc"

    def __post_init__(self) -> None:
        if self.count < 1:
            raise UserError(f"the number of groups must be at least 1, not {self.count}")
        if not 0 <= self.index < self.count:
            raise UserError(f"group index {self.index} is outside 0..{self.count - 1}")
        if self.split not in GROUP_SPLITS:
            raise UserError(f"unknown group split '{self.split}'; choose ipc or classes")

    def check(self, ipc: int, num_classes: int) -> None:
        check_groups(self.count, self.split, ipc, num_classes)

    def seed(self, seed: int) -> int:
        """The group's own seed for every random stream except the shared initial-image permutation."""
        return derive_seed(seed, "group", self.index)

    def classes(self, num_classes: int) -> list[int]:
        return list(range(self.index, num_classes, self.count)) if self.split == "classes" else list(range(num_classes))

    def ipc_range(self, ipc: int) -> tuple[int, int]:
        """[start, stop) of this group's chunk of a class's IPC budget (the whole budget for a classes split)."""
        if self.split == "classes":
            return 0, ipc
        base, extra = divmod(ipc, self.count)
        start = self.index * base + min(self.index, extra)
        return start, start + base + (1 if self.index < extra else 0)

    def as_dict(self) -> dict:
        return {"index": self.index, "count": self.count, "split": self.split}


def check_groups(count: int, split: str, ipc: int, num_classes: int | None = None) -> None:
    """Refuse a group layout that leaves a group empty (one line, naming the fix); None skips the class check."""
    if count < 1:
        raise UserError(f"the number of groups must be at least 1, not {count}")
    if split not in GROUP_SPLITS:
        raise UserError(f"unknown group split '{split}'; choose ipc or classes")
    if split == "ipc" and count > ipc:
        raise UserError(
            f"{count} groups is more than the IPC ({ipc}): an ipc split needs one image per class "
            f"in every group; use at most {ipc} groups or --group-split classes"
        )
    if split == "classes" and num_classes is not None and count > num_classes:
        raise UserError(
            f"{count} groups is more than the {num_classes} classes: a classes split needs one class "
            f"in every group; use at most {num_classes} groups or --group-split ipc"
        )
