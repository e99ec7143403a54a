"""Tests for clf/io.py: line-numbered reading, fsynced appends, atomic writes."""

from __future__ import annotations

import gzip
import json
import os
import stat

import pytest

from clf.io import (
    DataFileError,
    append_jsonl,
    read_json,
    read_jsonl,
    truncate_partial_last_line,
    write_json_atomic,
    write_samples_json,
)


def test_partial_last_line_is_tolerated_only_when_asked_and_cut_on_request(tmp_path):
    path = tmp_path / "a.jsonl"
    append_jsonl(path, [{"i": 1}, {"i": 2}])
    with path.open("a") as handle:
        handle.write('{"i": 3, "tru')
    with pytest.raises(DataFileError, match=r"a\.jsonl, line 3"):
        list(read_jsonl(path))
    assert [r["i"] for _, r in read_jsonl(path, skip_partial_last_line=True)] == [1, 2]
    assert truncate_partial_last_line(path) is True
    assert path.read_text() == '{"i": 1}\n{"i": 2}\n'
    assert truncate_partial_last_line(path) is False


def test_a_corrupt_line_in_the_middle_is_never_skipped(tmp_path):
    path = tmp_path / "b.jsonl"
    path.write_text('{"i": 1}\n{"i": \n{"i": 3}\n')
    with pytest.raises(DataFileError, match=r"line 2"):
        list(read_jsonl(path, skip_partial_last_line=True))


def test_a_line_that_is_not_an_object_is_named(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"i": 1}\n[1, 2]\n')
    with pytest.raises(DataFileError, match=r"line 2: not a valid JSON object \(expected a JSON object, got list\)"):
        list(read_jsonl(path))


def test_atomic_write_leaves_the_old_file_when_encoding_fails(tmp_path):
    path = tmp_path / "d.json"
    write_json_atomic(path, {"ok": True})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"bad": object()})
    assert read_json(path) == {"ok": True}
    assert [p.name for p in tmp_path.iterdir()] == ["d.json"], "a temporary file was left behind"


def test_written_files_get_the_usual_permissions(tmp_path):
    path = tmp_path / "e.json"
    write_json_atomic(path, {})
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_samples_json_is_valid_json_with_one_sample_per_line(tmp_path):
    path = tmp_path / "f.json"
    samples = [{"text": 'naïve "quoted"\nline'}, {"text": "b"}]
    write_samples_json(path, {"count": 2}, samples)
    assert json.loads(path.read_text()) == {"metadata": {"count": 2}, "samples": samples}
    lines = path.read_text().splitlines()
    assert sum(line.startswith('{"text"') for line in lines) == 2
    write_samples_json(path, {"count": 0}, [])
    assert json.loads(path.read_text()) == {"metadata": {"count": 0}, "samples": []}


def test_missing_and_invalid_json_files_are_named(tmp_path):
    with pytest.raises(DataFileError, match=r"g\.json: file not found"):
        read_json(tmp_path / "g.json")
    (tmp_path / "h.json").write_text("{nope")
    with pytest.raises(DataFileError, match=r"h\.json: not valid JSON"):
        read_json(tmp_path / "h.json")


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        # Each escaped as another exception before (UnicodeDecodeError, RecursionError, ValueError, EOFError,
        # BadGzipFile).
        ("a.jsonl", b'{"i": 1}\n{"i": "\xff"}\n', r"a\.jsonl, line 2: not valid UTF-8"),
        ("b.jsonl", b'{"i": 1}\n' + b"[" * 100_000 + b"]" * 100_000 + b"\n", r"line 2: not a valid JSON object \("),
        ("c.jsonl", b'{"i": 1}\n{"i": ' + b"9" * 5_000 + b"}\n", r"line 2: not a valid JSON object \(Exceeds"),
        ("d.jsonl.gz", gzip.compress(b'{"i": 1}\n' * 3)[:-6], r"d\.jsonl\.gz, line 4: cannot be read \("),
        ("e.jsonl.gz", b'{"i": 1}\n', r"e\.jsonl\.gz, line 1: cannot be read \(Not a gzipped file"),
    ],
    ids=["invalid-utf8", "deep-nesting", "huge-integer", "truncated-gzip", "not-gzip"],
)
def test_unreadable_lines_are_data_file_errors_naming_the_line(tmp_path, name, data, message):
    path = tmp_path / name
    path.write_bytes(data)
    read = []
    with pytest.raises(DataFileError, match=message):
        read.extend(read_jsonl(path))
    assert all(record == {"i": 1} for _, record in read)
