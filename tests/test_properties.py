"""Property-based checks (hypothesis) of the `--set` grammar and of the JSON Lines readers."""

from __future__ import annotations

import json
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distillkit.dialogbench.itemlog import ItemLog
from distillkit.dialogbench.schema import load_sample, read_jsonl_lenient
from distillkit.errors import UserError
from distillkit.overrides import MISSING, apply_overrides, get_dotted

KEYS = st.lists(st.text(string.ascii_lowercase + "_", min_size=1, max_size=8), min_size=1, max_size=3).map(".".join)
VALUES = st.one_of(
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.text(string.ascii_letters + string.digits + " _-/", max_size=12),
    st.lists(st.integers(0, 100), max_size=4),
)
ANY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@ANY
@given(KEYS, VALUES)
def test_a_set_item_writes_its_value_at_its_key(key, value):
    data = apply_overrides({}, [f"{key}={json.dumps(value)}"])
    assert get_dotted(data, key) == value


@ANY
@given(KEYS, st.text(string.ascii_letters + " _", min_size=1, max_size=12))
def test_a_value_that_is_not_json_stays_the_text_typed(key, text):
    data = apply_overrides({}, [f"{key}={text}"])
    try:
        expected = json.loads(text)
    except json.JSONDecodeError:
        expected = text
    assert get_dotted(data, key) == expected


@ANY
@given(st.text(max_size=20).filter(lambda s: "=" not in s or not s.split("=", 1)[0].strip()))
def test_anything_else_is_one_clear_refusal(item):
    try:
        apply_overrides({}, [item])
    except UserError as e:
        assert "\n" not in str(e) and "key=value" in str(e)
    else:
        raise AssertionError(f"{item!r} was accepted")


@ANY
@given(KEYS, VALUES)
def test_known_only_refuses_a_key_the_settings_lack(key, value):
    base = {"apm": {"ipc": 1}}
    item = f"{key}={json.dumps(value)}"
    if get_dotted(base, key) is MISSING:
        try:
            apply_overrides(base, [item], known_only=True)
        except UserError as e:
            assert key in str(e) and "\n" not in str(e)
        else:
            raise AssertionError(f"{key} was accepted")


@ANY
@given(st.binary(max_size=300))
def test_random_bytes_after_good_records_lose_no_good_record(tmp_path, junk):
    path = tmp_path / "items.jsonl"
    good = [{"key": f"k{i}", "v": i} for i in range(3)]
    path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in good) + junk)
    log = ItemLog(path)
    try:
        assert all(log.records[r["key"]] == r for r in good)
        log.write({"key": "new", "v": 9})
    finally:
        log.close()
    again = ItemLog(path)  # the repaired file reads back with the new record intact
    try:
        assert again.records["new"] == {"key": "new", "v": 9} and all(r["key"] in again for r in good)
    finally:
        again.close()


@ANY
@given(st.binary(min_size=1, max_size=200))
def test_instance_reader_skips_or_refuses_junk_in_one_line(tmp_path, junk):
    sample = load_sample()[:2]
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"".join(json.dumps(i.model_dump(mode="json")).encode() + b"\n" for i in sample) + junk)
    try:
        kept, skipped = read_jsonl_lenient(path, skip_invalid=True)
    except UserError as e:
        assert "\n" not in str(e)
        return
    assert [i.id for i in kept[:2]] == [i.id for i in sample] and all("line" in s for s in skipped)
