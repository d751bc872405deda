"""Many processes through torchrun: one process group, work dealt round-robin, results through files.

Outside torchrun nothing here starts anything: one process does every piece of work, as it always did. Under
`torchrun --nproc_per_node N ...`, `process_group` joins the N processes (gloo on the CPU; nccl on CUDA, process r
on GPU LOCAL_RANK r). Work is a list of independent items (networks of a pool, cells of a comparison, fine-tunes):
`share` deals those not yet done round-robin (item i of them to rank i mod N), each rank writes every result it
computes to its own file (atomically, through `distillkit.runs`), `barrier` waits for all ranks, and rank 0 writes
what sums them up. Seeds come from the item, never from the rank, so N processes compute what one process computes.
torch is imported only when a process group is asked for.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from distillkit.errors import UserError

if TYPE_CHECKING:
    import torch

T = TypeVar("T")

# A rank that finished its share waits at the barrier for the slowest rank, which may be a whole network or cell
# (hours on a paper schedule) when N does not divide the work: the collective timeout must outlast that.
BARRIER_TIMEOUT = datetime.timedelta(days=7)
_JOB: dict[str, str] = {}  # "token": this torchrun job's identity, drawn by rank 0 and known to every rank


def launched() -> bool:
    """Whether torchrun started this process as one of several (WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def joined() -> bool:
    """Whether this process is in a torch.distributed process group now."""
    dist = sys.modules.get("torch.distributed")
    return dist is not None and dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank in the joined group (0 outside one)."""
    return sys.modules["torch.distributed"].get_rank() if joined() else 0


def world_size() -> int:
    """The number of processes in the joined group (1 outside one)."""
    return sys.modules["torch.distributed"].get_world_size() if joined() else 1


def is_main() -> bool:
    """Whether this process writes summaries and prints: rank 0 of the group (or of torchrun), or the only one."""
    return rank() == 0 if joined() else os.environ.get("RANK", "0") == "0"


def job_token() -> str | None:
    """The identity of the joined torchrun job (the same on every rank), None outside one."""
    return _JOB.get("token") if joined() else None


def rank_device(device: str | torch.device) -> torch.device:
    """The device of this process: under torchrun, CUDA means GPU LOCAL_RANK; else `device` unchanged."""
    import torch

    device = torch.device(device)
    if not launched() or device.type != "cuda":
        return device
    if device.index is not None and int(os.environ.get("LOCAL_WORLD_SIZE", "1")) > 1:
        raise UserError(
            f"--device {device} puts every torchrun process on one GPU; use --device cuda or auto "
            "(process r then takes GPU LOCAL_RANK r)"
        )
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


@contextlib.contextmanager
def process_group(device: str | torch.device = "cpu") -> Iterator[torch.device]:
    """Join torchrun's processes for the block and yield this process's device; outside torchrun, `device` as is.

    A block inside another (the pool a comparison trains) uses the group already joined and leaves it open.
    """
    import torch

    if not launched() or joined():
        yield torch.device(device)
        return
    import torch.distributed as dist

    device = rank_device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device, timeout=BARRIER_TIMEOUT)
    else:
        dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
    try:
        _JOB["token"] = broadcast(uuid.uuid4().hex if dist.get_rank() == 0 else None)
        yield device
    finally:
        _JOB.pop("token", None)
        if dist.is_initialized():
            dist.destroy_process_group()


def barrier() -> None:
    """Wait until every rank gets here (nothing outside a group)."""
    if joined():
        sys.modules["torch.distributed"].barrier()


def broadcast(value: T) -> T:
    """Rank 0's `value` on every rank (any picklable object)."""
    if not joined():
        return value
    box = [value]
    sys.modules["torch.distributed"].broadcast_object_list(box, src=0)
    return box[0]


def gather(value: T) -> list[T]:
    """Every rank's `value`, in rank order, on every rank (any picklable object)."""
    if not joined():
        return [value]
    values: list[Any] = [None] * world_size()
    sys.modules["torch.distributed"].all_gather_object(values, value)
    return values


def share(items: Iterable[T], done: Callable[[T], bool] = lambda _item: False) -> list[T]:
    """This rank's share of the `items` not yet `done`: of those, item i goes to rank i mod N.

    Every rank decides from the same state: no rank starts work (and writes a result) before all have looked.
    With more ranks than items the extra ranks get nothing and wait at the next barrier.
    """
    pending = [item for item in items if not done(item)]
    barrier()
    return pending[rank() :: world_size()]


def share_map(fn: Callable[[T], Any], items: Sequence[T]) -> list[Any]:
    """`[fn(x) for x in items]` with the items shared over the ranks; every rank gets the whole list, in order."""
    mine = list(range(len(items)))[rank() :: world_size()]
    results = {i: fn(items[i]) for i in mine}
    merged: dict[int, Any] = {}
    for part in gather(results):
        merged.update(part)
    return [merged[i] for i in range(len(items))]


def main_first(fn: Callable[[], T]) -> T:
    """`fn()` on rank 0, then on the other ranks once rank 0 has finished it (e.g. taking a run directory).

    An error on rank 0 stops every rank with the same line, instead of leaving them waiting.
    """
    if not joined():
        return fn()
    if rank() == 0:
        try:
            result = fn()
        except BaseException as e:
            broadcast(f"{e}" if isinstance(e, UserError) else f"rank 0 stopped ({type(e).__name__}: {e})")
            raise
        broadcast(None)
        return result
    failure = broadcast(None)
    if failure is not None:
        raise UserError(failure)
    return fn()
