"""Run directories: the resolved config, compute-once results, atomic writes, and metrics with provenance.

`Run` is the one way a system keeps its results on disk: it refuses a resume with other settings (a comparison may
extend *what* it computes), caches each finished result (`run.cached`), writes every file atomically (a kill never
leaves half a file) and stamps `metrics.json` with the versions, git commit, device and wall time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import subprocess
import time
import weakref
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distillkit.distributed import job_token, rank, world_size
from distillkit.errors import UserError

if TYPE_CHECKING:  # torch and numpy load only when a run needs them: a server client stays light
    import numpy as np
    import torch


def make_dir(path: Path, what: str = "--out") -> Path:
    """Create directory `path` (and its parents); a file in the way or an unwritable place is one clear line."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} is a file, not a directory; pass a directory (a new one, or an earlier run's)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(
            f"cannot create directory {path} for {what} ({(e.strerror or str(e)).lower()}); "
            "choose a path in a folder you can write to"
        ) from None
    return path


def check_out_file(path: Path, what: str = "--out") -> Path:
    """Refuse an output file path that is a directory, or whose folder cannot be created, before any work."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {path} is a directory; pass a file path, e.g. {path / 'results.json'}")
    make_dir(path.parent, f"the folder of {what}")
    return path


@contextlib.contextmanager
def atomic_path(path: Path, keep_existing: bool = False) -> Iterator[Path]:
    """A temporary path beside `path` (a file or a folder) to write to; it replaces `path` when the block ends.

    A kill or an error leaves `path` as it was. The temporary name is per process, so processes writing the
    same cache entry do not collide; with `keep_existing` the first one to finish wins and the rest discard
    their copy.
    """
    path = Path(path)
    make_dir(path.parent, f"the folder of {path.name}")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    _remove(tmp)
    try:
        yield tmp
        if not (keep_existing and path.exists()):
            if tmp.is_dir() and path.is_dir():
                shutil.rmtree(path)
            os.replace(tmp, path)
    finally:
        _remove(tmp)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (write a temp file, then rename), so a kill never leaves half a file."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))


def save_torch(path: Path, obj: Any) -> None:
    """`torch.save` atomically."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """`safetensors.torch.save_file` atomically."""
    import safetensors.torch

    with atomic_path(path) as tmp:
        safetensors.torch.save_file(tensors, str(tmp), metadata=metadata)


def save_numpy(path: Path, array: np.ndarray) -> None:
    """`np.save` atomically (to exactly `path`)."""
    import numpy as np

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


def file_digest(path: Path, length: int = 64) -> str:
    """The sha256 of a file's bytes (hex, first `length` characters), read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:length]


def cache_dir(name: str = "") -> Path:
    """distillkit's cache folder, or its subfolder `name`: `$DISTILLKIT_CACHE`, default ~/.cache/distillkit."""
    root = Path(os.environ.get("DISTILLKIT_CACHE", Path.home() / ".cache" / "distillkit"))
    return make_dir(root / name if name else root, "the distillkit cache folder ($DISTILLKIT_CACHE)")


def read_json(path: Path) -> Any:
    """Read a JSON file, turning a corrupt one into a UserError."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e.msg}); delete it or restore it from a backup") from None


def prepare_run_dir(run_dir: Path, config: dict[str, Any], extendable: tuple[str, ...] = ()) -> Path:
    """Create `run_dir` with config.json, or check that an existing one holds the same config.

    Resuming a directory with a different config is refused: nothing there is touched. Top-level keys in
    `extendable` only say *what* to compute (e.g. which IPCs), each result cached apart, so they may change:
    config.json then records the new values.
    """
    run_dir = make_dir(run_dir)
    cfg_path = run_dir / "config.json"
    config = json.loads(json.dumps(config, sort_keys=True, default=str))
    old = read_json(cfg_path) if cfg_path.exists() else {}
    diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k) and k not in extendable)
    if old and diff:
        raise UserError(
            f"{run_dir} holds a run with a different config (differs in: {', '.join(diff)}); "
            "resume with the same settings or choose a new --out directory"
        )
    if old != config:
        write_json(cfg_path, config)
    return run_dir


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    """The commit of the distillkit checkout this code runs from (with `+dirty` for local changes), if any."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def device_name(device: str | torch.device | None) -> str:
    """`cpu`, or the CUDA device with its model name (e.g. `cuda:0 (NVIDIA H200)`)."""
    import torch

    from distillkit.devices import resolve_device

    device = resolve_device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return str(device)


def provenance(device: str | torch.device | None = None, seconds: float | None = None) -> dict[str, Any]:
    """What produced a result: versions, git commit, device, processes, host, date and wall time."""
    import torch

    return {
        "distillkit": _version("distillkit"),
        "torch": torch.__version__,
        "transformers": _version("transformers"),
        "python": platform.python_version(),
        "git_commit": _git_commit(),
        "device": device_name(device),
        "cpu_threads": torch.get_num_threads(),
        "processes": world_size(),  # torchrun processes that shared the work (1: this one alone)
        "host": platform.node(),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_seconds": seconds,
    }


_HELD: dict[Path, tuple[int, int]] = {}  # run dir -> (lock file descriptor, Run objects of this process using it)


def _lock_dir(run_dir: Path) -> Callable[[], None]:
    """Hold an exclusive lock on `run_dir` (file `.lock`); another process writing there is refused.

    Runs of this same process share the lock. The ranks of one torchrun job share the directory: rank 0 takes
    the lock and writes the job's token into `.lock`; every other rank, which opens the run after rank 0
    (`distributed.main_first`), only checks that the token there is its job's. Returns the release function;
    the system also releases the lock when the process dies (kill -9).
    """
    try:
        import fcntl
    except ImportError:  # no flock on this platform: no guard
        return lambda: None
    token = job_token()
    key = run_dir.resolve()
    if token is not None and rank() != 0:
        held = (key / ".lock").read_text() if (key / ".lock").exists() else ""
        if held != token:
            raise UserError(
                f"{run_dir} is not held by rank 0 of this torchrun job (another process writes there, or rank 0 "
                "has not opened it yet); wait for the other process to finish or choose another --out"
            )
        return lambda: None
    if key in _HELD:
        fd, users = _HELD[key]
        _HELD[key] = (fd, users + 1)
    else:
        fd = os.open(key / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise UserError(
                f"{run_dir} is being written by another running distillkit process; "
                "wait for it to finish (then rerun to resume) or choose another --out"
            ) from None
        _HELD[key] = (fd, 1)
    if token is not None:  # the other ranks of this job check it
        os.ftruncate(fd, 0)
        os.pwrite(fd, token.encode(), 0)
    released = False

    def release() -> None:
        nonlocal released
        if released or key not in _HELD:
            return
        released = True
        fd, users = _HELD.pop(key)
        if users > 1:
            _HELD[key] = (fd, users - 1)
        else:
            os.close(fd)

    return release


class Run:
    """One run directory: its config guard, compute-once results, atomic writes and stamped metrics."""

    def __init__(
        self,
        path: Path,
        config: dict[str, Any],
        extendable: tuple[str, ...] = (),
        device: str | torch.device | None = None,
    ) -> None:
        self.dir = prepare_run_dir(Path(path), config, extendable)
        self.device = device
        self.started = time.perf_counter()
        self._release = _lock_dir(self.dir)
        weakref.finalize(self, self._release)

    def close(self) -> None:
        """Let another process write here (also done by `write_metrics`, and when the process ends)."""
        self._release()

    def path(self, *parts: str) -> Path:
        """A path inside the run directory."""
        return self.dir.joinpath(*parts)

    def cached(self, name: str, fn: Callable[[], Any], timed: bool = False) -> Any:
        """The JSON result `name` (e.g. `evals/apm.json`) if a finished run left it, else `fn()` written there.

        With `timed`, the dict `fn` returns gains `seconds` (its compute time, not counted again on reuse).
        """
        path = self.path(name)
        if path.exists():
            return read_json(path)
        start = time.perf_counter()
        result = fn()
        if timed:
            result = {**result, "seconds": time.perf_counter() - start}
        write_json(path, result)
        return result

    def write_json(self, name: str, obj: Any) -> Path:
        """Write `obj` as JSON at `name` inside the run, atomically."""
        path = self.path(name)
        write_json(path, obj)
        return path

    def write_metrics(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """`metrics.json` with a `provenance` block (versions, commit, device, this process's wall time)."""
        stamped = {**metrics, "provenance": provenance(self.device, time.perf_counter() - self.started)}
        self.write_json("metrics.json", stamped)
        self.close()  # the run is finished: another process may now extend or re-read it
        return stamped
