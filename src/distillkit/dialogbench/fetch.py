"""Download the published DialogBench release (kwai/DialogBench on GitHub), check it, and import it.

Each task file goes to `OUT/data/data_<lang>/<official name>` through a temporary file that replaces the final
name only once it is complete (Content-Length matched, last line whole, sha256 equal to the recorded one), so an
interrupted or refused download leaves nothing half-written and a rerun keeps the files already checked.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from distillkit.dialogbench.official import import_official
from distillkit.dialogbench.schema import write_jsonl
from distillkit.dialogbench.tasks import Task, all_tasks, check_lang
from distillkit.errors import UserError
from distillkit.lm.secrets import mask_url
from distillkit.progress import progress as progress_bar
from distillkit.runs import atomic_path, make_dir, write_json

DEFAULT_BASE_URL = "https://raw.githubusercontent.com/kwai/DialogBench/HEAD"
HASHES_FILE = "release_hashes.json"
_CHUNK = 1 << 16


@dataclass
class FetchResult:
    """What `fetch_release` wrote and what it checked."""

    data_file: Path  # instance JSONL for `dialogbench eval --data`
    report_file: Path  # import report (+ the release's URL and file hashes)
    n_instances: int
    hashes: dict[str, str]  # official file name -> sha256
    downloaded: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # already present and checked: not downloaded again
    unrecorded: dict[str, str] = field(default_factory=dict)  # hashes with nothing recorded to compare with


def recorded_hashes(lang: str) -> dict[str, str]:
    """The sha256 per official file name recorded in the package for `lang` (empty until recorded)."""
    check_lang(lang)
    text = resources.files("distillkit.dialogbench").joinpath(HASHES_FILE).read_text(encoding="utf-8")
    return dict(json.loads(text).get(lang, {}))


def file_url(base_url: str, lang: str, name: str) -> str:
    """Raw URL of one release file: `<base>/data/data_<lang>/<name>`."""
    return f"{base_url.rstrip('/')}/data/data_{lang}/{urllib.parse.quote(name)}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _check_last_line(path: Path, url: str) -> None:
    """Refuse a JSON Lines file whose last line is cut (not UTF-8 or not a whole JSON object)."""
    with path.open("rb") as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - (1 << 20)))
        tail = f.read().rstrip(b"\r\n")
    last = tail.rsplit(b"\n", 1)[-1]
    if not last.strip():
        raise UserError(f"{mask_url(url)}: the file is empty; run again, or check --base-url")
    try:
        json.loads(last.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UserError(f"{mask_url(url)}: truncated download (the last line ends mid-record); run again") from None


def _download(url: str, dest: Path, label: str, timeout: float, show_progress: bool) -> str:
    """Stream `url` into `dest` (a temporary path) under a progress bar; returns its sha256.

    Any failure is one UserError line.
    """
    shown = mask_url(url)
    host = urllib.parse.urlsplit(url).hostname or url
    h = hashlib.sha256()
    got = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, dest.open("wb") as out:
            length = resp.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            bar = progress_bar(None, label, total=expected, leave=False, disable=not show_progress)
            bar.unit, bar.unit_scale = "B", True
            while block := resp.read(_CHUNK):
                out.write(block)
                h.update(block)
                got += len(block)
                bar.update(len(block))
            bar.close()
    except urllib.error.HTTPError as e:
        raise UserError(f"{shown}: HTTP {e.code} {e.reason}; check --base-url (and the language)") from None
    except urllib.error.URLError as e:
        reason = getattr(e.reason, "strerror", None) or str(e.reason)
        raise UserError(f"cannot reach {host} ({reason}); check the network, or pass --base-url of a mirror") from None
    except http.client.IncompleteRead as e:
        raise UserError(
            f"{shown}: truncated download ({got + len(e.partial)} of {got + len(e.partial) + (e.expected or 0)} "
            "bytes); run again"
        ) from None
    except (TimeoutError, ConnectionError, http.client.HTTPException) as e:
        why = str(e) or type(e).__name__
        raise UserError(f"{shown}: the download broke off after {got} bytes ({why}); run again") from None
    if expected is not None and got != expected:
        raise UserError(f"{shown}: truncated download ({got} of {expected} bytes); run again")
    return h.hexdigest()


def _fetch_file(
    task: Task, lang: str, folder: Path, base_url: str, recorded: str | None, timeout: float, show_progress: bool
) -> tuple[str, bool]:
    """Make sure one checked task file is in `folder`; returns (sha256, downloaded now)."""
    name = task.official[lang]
    dest = folder / name
    if dest.is_file():
        digest = _sha256(dest)
        if recorded is None or digest == recorded:
            return digest, False
        dest.unlink()  # differs from the recorded release: fetch it again
    url = file_url(base_url, lang, name)
    with atomic_path(dest) as tmp:
        digest = _download(url, tmp, name, timeout, show_progress)
        _check_last_line(tmp, url)
        if recorded is not None and digest != recorded:
            raise UserError(
                f"{name}: sha256 {digest[:16]}... differs from the recorded {recorded[:16]}...; refused "
                "(the release changed upstream or the download is corrupt)"
            )
    return digest, True


def fetch_release(
    lang: str,
    out_dir: Path,
    base_url: str | None = DEFAULT_BASE_URL,
    *,
    hashes: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    show_progress: bool = True,
    echo: Callable[[str], None] = print,
) -> FetchResult:
    """Download the 12 task files of `lang` into `out_dir`, check them, and import them.

    Writes `out_dir/data/data_<lang>/*.json` (the release layout), `out_dir/dialogbench_<lang>.jsonl` (instances
    for `dialogbench eval --data`) and `out_dir/dialogbench_<lang>.import.json` (import report with the hashes).
    `base_url` None means the public repository; `hashes` (official file name -> sha256) defaults to the ones
    recorded in the package.
    """
    check_lang(lang)
    base_url = base_url or DEFAULT_BASE_URL
    if urllib.parse.urlsplit(base_url).scheme not in ("http", "https"):
        raise UserError(f"--base-url {mask_url(base_url)!r} is not an http(s) URL; e.g. {DEFAULT_BASE_URL}")
    out_dir = make_dir(Path(out_dir), "--out")
    folder = out_dir / "data" / f"data_{lang}"
    recorded = recorded_hashes(lang) if hashes is None else dict(hashes)
    tasks = list(all_tasks().values())
    digests: dict[str, str] = {}
    downloaded: list[str] = []
    kept: list[str] = []
    for n, task in enumerate(tasks, 1):
        name = task.official[lang]
        digest, fresh = _fetch_file(task, lang, folder, base_url, recorded.get(name), timeout, show_progress)
        digests[name] = digest
        (downloaded if fresh else kept).append(name)
        check = "verified" if name in recorded else "no recorded hash"
        state = "downloaded" if fresh else "already here"
        size = (folder / name).stat().st_size
        echo(f"[{n}/{len(tasks)}] {task.abbr} {name}: {state}, {size:,} bytes, sha256 {digest[:16]}... ({check})")
    unrecorded = {name: d for name, d in digests.items() if name not in recorded}
    if unrecorded:
        echo(
            f"no sha256 is recorded for {len(unrecorded)} {lang} release file(s); to pin this release, record these "
            f'under "{lang}" in distillkit/dialogbench/{HASHES_FILE}:'
        )
        echo(json.dumps(unrecorded, indent=2))

    instances, report = import_official(out_dir, lang)
    report["release"] = {
        "base_url": mask_url(base_url),
        "sha256": digests,
        "verified_against_recorded": sorted(set(digests) - set(unrecorded)),
    }
    data_file = out_dir / f"dialogbench_{lang}.jsonl"
    with atomic_path(data_file) as tmp:
        write_jsonl(tmp, instances)
    report_file = data_file.with_suffix(".import.json")
    write_json(report_file, report)
    echo(
        f"imported {len(instances)} instances to {data_file}; skipped {len(report['skipped'])}, "
        f"{len(report['warnings'])} warnings (see {report_file})"
    )
    return FetchResult(data_file, report_file, len(instances), digests, downloaded, kept, unrecorded)
