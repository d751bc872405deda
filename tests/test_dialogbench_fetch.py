"""Downloading the published release from a loopback server: checks, one-line failures, nothing half-written, resume."""

from __future__ import annotations

import hashlib
import socket
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from distillkit.dialogbench.fetch import fetch_release, recorded_hashes
from distillkit.dialogbench.official import export_official
from distillkit.dialogbench.schema import load_sample, read_jsonl
from distillkit.dialogbench.tasks import all_tasks
from distillkit.errors import UserError

NAMES = [t.official["en"] for t in all_tasks().values()]


class ReleaseHandler(SimpleHTTPRequestHandler):
    """Serves the release folder; `server.faults` maps a file name to 'error', 'short' (body cut, full
    Content-Length announced) or 'cut' (a file that ends mid-line, with a matching Content-Length)."""

    def do_GET(self) -> None:
        name = self.path.rsplit("/", 1)[-1]
        self.server.requests.append(name)
        fault = self.server.faults.get(name)
        if fault == "error":
            self.send_error(503, "Service Unavailable")
            return
        if fault in ("short", "cut"):
            body = (Path(self.directory) / self.path.lstrip("/")).read_bytes()
            cut = body[: len(body) // 2]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body) if fault == "short" else len(cut)))
            self.end_headers()
            self.wfile.write(cut)
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "release"
    export_official(load_sample(), root / "data")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(ReleaseHandler, directory=str(root)))
    httpd.requests, httpd.faults = [], {}
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.hashes = {n: hashlib.sha256((root / "data" / "data_en" / n).read_bytes()).hexdigest() for n in NAMES}
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _fetch(out: Path, url: str, lines: list[str], **kw):
    return fetch_release("en", out, url, show_progress=False, echo=lines.append, **kw)


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.rglob("*") if p.is_file() and p.name.startswith("."))


def test_no_recorded_hash_says_so_and_prints_the_hashes(server, tmp_path):
    assert recorded_hashes("en") == {}  # nothing downloaded from the real release yet
    lines: list[str] = []
    res = _fetch(tmp_path / "out", server.url, lines)
    assert res.hashes == server.hashes and res.unrecorded == server.hashes
    said = [ln for ln in lines if ln.startswith("no sha256 is recorded")]
    assert len(said) == 1 and "12 en release file(s)" in said[0]
    printed = lines[lines.index(said[0]) + 1]
    assert all(f'"{n}": "{h}"' in printed for n, h in server.hashes.items())
    # the imported instances are the ones the server published
    assert sorted(i.id for i in read_jsonl(res.data_file)) == sorted(i.id for i in load_sample())
    assert res.n_instances == len(load_sample()) == 36
    assert len([ln for ln in lines if ln.startswith("[")]) == 12 and "(no recorded hash)" in lines[0]


def test_recorded_hashes_match_and_a_rerun_downloads_nothing(server, tmp_path):
    lines: list[str] = []
    res = _fetch(tmp_path / "out", server.url, lines, hashes=server.hashes)
    assert res.unrecorded == {} and not any("no sha256" in ln for ln in lines)
    assert sum("(verified)" in ln for ln in lines) == 12 and len(res.downloaded) == 12
    server.requests.clear()
    again = _fetch(tmp_path / "out", server.url, [], hashes=server.hashes)
    assert server.requests == [] and again.kept == NAMES and again.n_instances == 36


def test_a_kept_file_that_differs_from_the_recorded_hash_is_downloaded_again(server, tmp_path):
    _fetch(tmp_path / "out", server.url, [])
    changed = tmp_path / "out" / "data" / "data_en" / NAMES[3]
    changed.write_bytes(changed.read_bytes().replace(b'"label": "', b'"label": "X'))
    server.requests.clear()
    res = _fetch(tmp_path / "out", server.url, [], hashes=server.hashes)
    assert server.requests == [NAMES[3]] and res.downloaded == [NAMES[3]] and res.hashes == server.hashes
    assert len(res.kept) == 11 and res.n_instances == 36


def test_recorded_hash_mismatch_is_refused_and_nothing_is_left(server, tmp_path):
    wrong = dict(server.hashes, **{NAMES[2]: "0" * 64})
    with pytest.raises(UserError, match=rf"{NAMES[2]}: sha256 [0-9a-f]{{16}}\.\.\. differs from the recorded 0{{16}}"):
        _fetch(tmp_path / "out", server.url, [], hashes=wrong)
    folder = tmp_path / "out" / "data" / "data_en"
    assert sorted(p.name for p in folder.iterdir()) == sorted(NAMES[:2]) and _leftovers(tmp_path / "out") == []
    assert not (tmp_path / "out" / "dialogbench_en.jsonl").exists()


@pytest.mark.parametrize("fault", ["short", "cut"])
def test_truncated_file_is_refused_then_a_rerun_resumes(server, tmp_path, fault):
    server.faults[NAMES[4]] = fault
    with pytest.raises(UserError) as err:
        _fetch(tmp_path / "out", server.url, [])
    msg = str(err.value)
    assert "\n" not in msg and NAMES[4] in msg and "truncated download" in msg
    if fault == "short":
        size = len((tmp_path / "release" / "data" / "data_en" / NAMES[4]).read_bytes())
        assert f"({size // 2} of {size} bytes)" in msg
    folder = tmp_path / "out" / "data" / "data_en"
    assert sorted(p.name for p in folder.iterdir()) == sorted(NAMES[:4]) and _leftovers(tmp_path / "out") == []
    server.faults.clear()
    server.requests.clear()
    res = _fetch(tmp_path / "out", server.url, [])
    assert server.requests == NAMES[4:] and res.kept == NAMES[:4] and res.n_instances == 36


def test_server_error_names_the_url(server, tmp_path):
    server.faults[NAMES[0]] = "error"
    with pytest.raises(UserError, match=rf"^{server.url}/data/data_en/{NAMES[0]}: HTTP 503 Service Unavailable; check"):
        _fetch(tmp_path / "out", server.url, [])
    assert not any((tmp_path / "out").rglob("*.json*"))


def test_unreachable_host_is_one_line(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UserError, match=r"^cannot reach 127\.0\.0\.1 \(.*\); check the network, or pass --base-url"):
        _fetch(tmp_path / "out", f"http://127.0.0.1:{port}", [], timeout=5)


def test_base_url_must_be_http(tmp_path):
    with pytest.raises(UserError, match=r"--base-url 'ftp://example.org/x' is not an http\(s\) URL"):
        _fetch(tmp_path / "out", "ftp://example.org/x", [])
    assert not (tmp_path / "out" / "data").exists()
