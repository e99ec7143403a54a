"""Property-based fuzzing of clf/data/snapshot.py and the JSON Lines reading under it (clf/io.py).

The promise: reading a snapshot, in either format, yields valid `Paper`s or raises `DataFileError` whose message
names the file and the line (and the field, where one is at fault). No other exception escapes, nothing hangs, and a
well-formed record is never read as a different paper.

The fast properties run with a fixed seed and a few hundred examples; ``pytest -m slow`` runs them with many more.
"""

from __future__ import annotations

import gzip
import json
import re
from datetime import UTC, date, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clf.data.paper import Paper, strip_version
from clf.data.snapshot import DateRange, SnapshotReader
from clf.io import DataFileError
from tests.helpers.papers import assert_valid_paper

FAST = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    # Each example rewrites one file in the test's tmp_path, so sharing that fixture across examples is fine.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
SLOW = settings(FAST, max_examples=5_000)

FIELDS = ("id", "title", "abstract", "categories", "primary", "published", "updated", "update_date", "versions")
FIELDS += ("authors", "authors_parsed")

# ------------------------------------------------------------------------------------------------ strategies

category_names = st.from_regex(r"[a-z]{2,8}(-[a-z]{2,4})?\.[A-Z]{2}|[a-z]{2,8}(-[a-z]{2,4})?", fullmatch=True)
arxiv_ids = st.from_regex(r"([0-9]{4}\.[0-9]{4,5}|[a-z-]{2,10}/[0-9]{7})(v[1-9])?", fullmatch=True)
# Any Unicode text: Hypothesis never draws lone surrogates here, so every value is valid UTF-8 once encoded.
texts = st.text(max_size=60)
days = st.dates(min_value=date(1990, 1, 1), max_value=date(2100, 12, 31))
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
)
# Dates as people write them: ISO in several shapes, RFC 2822, slashes, bare years, nonsense.
odd_dates = st.one_of(
    days.map(date.isoformat),
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
    st.datetimes(timezones=st.just(UTC)).map(format_datetime),
    days.map(lambda d: d.strftime("%d/%m/%Y")),
    days.map(lambda d: d.strftime("%Y%m%d")),
    st.integers(-99_999, 99_999).map(str),
    st.from_regex(r"[0-9]{1,6}-[0-9]{1,3}-[0-9]{1,3}([T ][0-9]{1,2}:[0-9]{2}(:[0-9]{2})?)?Z?", fullmatch=True),
    texts,
)


@st.composite
def shared_records(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed record in the shared format (``papers.jsonl.gz``)."""
    categories = draw(st.lists(category_names, min_size=1, max_size=4, unique=True))
    return {
        "id": draw(arxiv_ids),
        "title": draw(texts),
        "abstract": draw(texts),
        "categories": categories,
        "primary": draw(st.sampled_from(categories)),
        "published": draw(days).isoformat(),
    }


@st.composite
def oai_records(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed record in the public arxiv-metadata-oai-snapshot format."""
    created = draw(st.datetimes(min_value=datetime(1991, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)))
    names = draw(st.lists(st.tuples(texts, texts), max_size=3))
    return {
        "id": draw(arxiv_ids),
        "submitter": draw(texts),
        "authors": ", ".join(f"{first} {last}" for last, first in names),
        "title": draw(texts),
        "categories": " ".join(draw(st.lists(category_names, min_size=1, max_size=4, unique=True))),
        "abstract": draw(texts),
        "versions": [{"version": "v1", "created": format_datetime(created)}],
        "update_date": draw(days).isoformat(),
        "authors_parsed": [[last, first, ""] for last, first in names],
    }


records = shared_records() | oai_records()


@st.composite
def mutated_records(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A well-formed record with one field deleted or replaced by an arbitrary value; returns it and that field."""
    record = dict(draw(records))
    field = draw(st.sampled_from(FIELDS))
    if draw(st.booleans()):
        record.pop(field, None)
    else:
        record[field] = draw(
            st.one_of(
                json_values,
                odd_dates,
                st.lists(st.fixed_dictionaries({"created": json_values | odd_dates}), max_size=2),
                st.lists(st.lists(json_scalars, max_size=4), max_size=3),
                st.lists(texts, max_size=3),
            )
        )
    return record, field


def line_bytes(record: dict[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False).encode("utf-8")


@st.composite
def corrupt_lines(draw: st.DrawFn) -> bytes:
    """One line's bytes (no newline): random bytes, a damaged well-formed line, or a known hard case."""
    kind = draw(st.sampled_from(["bytes", "damaged", "value", "hard"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200)).replace(b"\n", b" ")
    if kind == "value":
        return json.dumps(draw(json_values)).encode()
    if kind == "hard":
        return draw(
            st.sampled_from(
                [
                    b"[" * 100_000 + b"]" * 100_000,
                    b'{"id": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
                    b'{"id": ' + b"7" * 5_000 + b"}",
                    b'{"id": "1", "title": "\\ud800", "abstract": "a", "categories": "cs.AI"}',
                    b'{"id": "1", "title": "\\udc00\\ud800", "abstract": "a", "categories": "cs.AI"}',
                    b'{"id": "1", "title": "t\x00", "abstract": "a", "categories": "cs.AI"}',
                    b'{"id": "1", "title": 1e999, "abstract": "a", "categories": "cs.AI"}',
                    b'{"id": "1", "title": NaN, "abstract": "a", "categories": "cs.AI"}',
                    b"\xef\xbb\xbf{}",
                    b"\xff\xfe{\x00}\x00",
                ]
            )
        )
    raw = bytearray(line_bytes(draw(records)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(raw)))
        edit = draw(st.sampled_from(["cut", "insert", "flip", "delete"]))
        if edit == "cut":
            del raw[at:]
        elif edit == "insert":
            raw[at:at] = draw(st.sampled_from([b"\x00", b"\xff", b"\xc3", b"\xed\xa0\x80", b'"', b"\\", b"{", b"\r"]))
        elif edit == "flip" and at < len(raw):
            raw[at] ^= draw(st.integers(1, 255))
        elif at < len(raw):
            del raw[at : at + draw(st.integers(1, 8))]
    return bytes(raw).replace(b"\n", b" ")


# ------------------------------------------------------------------------------------------------ reading


def read_all(path: Path) -> tuple[list[Paper], DataFileError | None]:
    """The papers read before the first error, and that error; any other exception fails the test."""
    papers: list[Paper] = []
    try:
        papers.extend(SnapshotReader(path).iter_papers())
    except DataFileError as err:
        return papers, err
    return papers, None


def assert_names_line(err: DataFileError, path: Path, line: int) -> None:
    assert str(err).startswith(f"{path}, line {line}: "), str(err)[:300]


def expected_paper(record: dict[str, Any]) -> Paper:
    """What a well-formed record of either format must read as, worked out independently of the reader."""
    categories = record["categories"].split() if isinstance(record["categories"], str) else record["categories"]
    primary = record.get("primary") or categories[0]
    if "versions" in record:
        created = record["versions"][0]["created"]
        published = datetime.strptime(created, "%a, %d %b %Y %H:%M:%S %z").date().isoformat()
        authors = [" ".join(p for p in (first, last) if p) for last, first, _ in record["authors_parsed"]]
    else:
        published, authors = record["published"], []
    return Paper(
        arxiv_id=strip_version(record["id"]),
        title=" ".join(record["title"].split()),
        abstract=" ".join(record["abstract"].split()),
        primary_category=primary,
        categories=[primary] + [c for c in categories if c != primary],
        authors=authors,
        published=published,
        updated=record.get("update_date") or published,
    )


def check_well_formed_records_read_exactly(path: Path, batch: list[dict[str, Any]], gz: bool) -> None:
    data = b"".join(line_bytes(r) + b"\n" for r in batch)
    path.write_bytes(gzip.compress(data) if gz else data)
    papers, err = read_all(path)
    assert err is None, err
    assert papers == [expected_paper(r) for r in batch]
    for paper in papers:
        assert_valid_paper(paper)


def check_one_corrupt_line(path: Path, before: list[dict[str, Any]], bad: bytes, after: list[dict[str, Any]]) -> None:
    path.write_bytes(b"".join(line_bytes(r) + b"\n" for r in before) + bad + b"\n" + line_bytes(after[0]) + b"\n")
    papers, err = read_all(path)
    for paper in papers:
        assert_valid_paper(paper)
    assert papers[: len(before)] == [expected_paper(r) for r in before]
    if err is not None:
        assert_names_line(err, path, len(before) + 1)
        assert len(papers) == len(before)
    else:  # the damage left a line that is still a usable record (e.g. a flipped letter in the title)
        assert len(papers) == len(before) + 2 or (len(papers) == len(before) + 1 and not bad.strip())


def check_one_bad_field(path: Path, mutated: tuple[dict[str, Any], str]) -> None:
    record, field = mutated
    path.write_bytes(line_bytes(record) + b"\n")
    papers, err = read_all(path)
    if err is None:
        assert len(papers) == 1
        assert_valid_paper(papers[0])
    else:
        assert_names_line(err, path, 1)
        # The message names the field at fault (versions[0].created for a bad date inside versions).
        assert re.search(rf"line 1: field '{re.escape(field)}(\[0\]\.created)?' ", str(err)), str(err)[:300]


def check_sampling_never_crashes(path: Path, batch: list[dict[str, Any]], bad: bytes, start: date) -> None:
    path.write_bytes(b"".join(line_bytes(r) + b"\n" for r in batch) + bad + b"\n")
    categories = sorted({c for r in batch for c in expected_paper(r).categories})
    try:
        sample = SnapshotReader(path).sample_by_category(
            categories, per_category=2, dates=DateRange(start, None), primary_only=False
        )
    except DataFileError as err:
        assert_names_line(err, path, len(batch) + 1)
        return
    for papers in sample.values():
        for paper in papers:
            assert_valid_paper(paper)
            assert paper.published >= start.isoformat()


def check_gzip_damage(path: Path, batch: list[dict[str, Any]], cut: float, flips: list[tuple[float, int]]) -> None:
    packed = bytearray(gzip.compress(b"".join(line_bytes(r) + b"\n" for r in batch)))
    for where, mask in flips:
        packed[int(where * (len(packed) - 1))] ^= mask
    damaged = bytes(packed[: int(cut * len(packed))])
    path.write_bytes(damaged)
    papers, err = read_all(path)
    if not damaged:  # an empty .gz file is an empty snapshot, as an empty .jsonl is
        assert (papers, err) == ([], None)
        return
    if err is None:
        # A damage gzip ignores (a cut at the very end, a flipped header mtime byte) must leave the papers intact.
        assert papers == [expected_paper(r) for r in batch]
        return
    for paper in papers:
        assert_valid_paper(paper)
    assert re.match(rf"{re.escape(str(path))}, line \d+: ", str(err)), str(err)[:300]
    if not flips:  # only cut short: what was read is exactly the beginning of the file, up to the line named
        number = int(re.match(rf"{re.escape(str(path))}, line (\d+)", str(err))[1])
        assert papers == [expected_paper(r) for r in batch[: len(papers)]]
        assert len(papers) < number <= len(batch) + 1


batches = st.lists(records, min_size=1, max_size=5)


@FAST
@given(batch=batches, gz=st.booleans())
def test_well_formed_records_read_as_the_same_papers(tmp_path: Path, batch, gz) -> None:
    check_well_formed_records_read_exactly(tmp_path / ("snap.jsonl.gz" if gz else "snap.jsonl"), batch, gz)


@FAST
@given(before=st.lists(records, max_size=3), bad=corrupt_lines(), after=st.lists(records, min_size=1, max_size=1))
def test_a_corrupt_line_is_a_data_file_error_naming_file_and_line(tmp_path: Path, before, bad, after) -> None:
    check_one_corrupt_line(tmp_path / "snap.jsonl", before, bad, after)


@FAST
@given(mutated=mutated_records())
def test_a_field_of_the_wrong_kind_is_named(tmp_path: Path, mutated) -> None:
    check_one_bad_field(tmp_path / "snap.jsonl", mutated)


@FAST
@given(batch=batches, bad=corrupt_lines() | mutated_records().map(lambda m: line_bytes(m[0])), start=days)
def test_sampling_by_date_never_crashes_on_odd_records(tmp_path: Path, batch, bad, start) -> None:
    check_sampling_never_crashes(tmp_path / "snap.jsonl", batch, bad, start)


@FAST
@given(
    batch=batches,
    cut=st.floats(0, 1),
    flips=st.lists(st.tuples(st.floats(0, 1), st.integers(1, 255)), max_size=2),
)
def test_a_damaged_gzip_snapshot_is_a_data_file_error(tmp_path: Path, batch, cut, flips) -> None:
    check_gzip_damage(tmp_path / "snap.jsonl.gz", batch, cut, flips)


@pytest.mark.slow
@SLOW
@given(
    batch=batches,
    bad=corrupt_lines() | mutated_records().map(lambda m: line_bytes(m[0])),
    mutated=mutated_records(),
    start=days,
    cut=st.floats(0, 1),
    flips=st.lists(st.tuples(st.floats(0, 1), st.integers(1, 255)), max_size=2),
)
def test_snapshot_fuzz_long(tmp_path: Path, batch, bad, mutated, start, cut, flips) -> None:
    check_well_formed_records_read_exactly(tmp_path / "ok.jsonl", batch, gz=False)
    check_one_corrupt_line(tmp_path / "line.jsonl", batch[:3], bad, batch[-1:])
    check_one_bad_field(tmp_path / "field.jsonl", mutated)
    check_sampling_never_crashes(tmp_path / "sample.jsonl", batch, bad, start)
    check_gzip_damage(tmp_path / "damaged.jsonl.gz", batch, cut, flips)


# ------------------------------------------------------------------------------------------------ what fuzzing found

GOOD = {"id": "2501.00001", "title": "T", "abstract": "A", "categories": "cs.AI"}


def line(**fields: Any) -> bytes:
    return json.dumps({**GOOD, **fields}).encode()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        # Each of these escaped as another exception, or read as a wrong paper, before the fix.
        (b'{"id": "1", "title": "\xff", "abstract": "a", "categories": "cs.AI"}', r"line 2: not valid UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, r"line 2: not a valid JSON object \(maximum recursion depth"),
        (b'{"id": ' + b"7" * 5_000 + b"}", r"line 2: not a valid JSON object \(Exceeds the limit"),
        (
            b'{"id": "1", "title": "\\ud800", "abstract": "a", "categories": "cs.AI"}',
            r"field 'title' holds an unpaired",
        ),
        (line(title=None), r"line 2: field 'title' must be a string, got null"),
        (line(abstract=["a", "b"]), r"field 'abstract' must be a string, got a list"),
        (line(id=704.0001), r"field 'id' must be a string, got a number"),
        (line(id=" v2 "), r"field 'id' is empty"),
        (line(categories=None), r"field 'categories' must be a list of names or a space-separated string, got null"),
        (line(categories=[1, 2]), r"field 'categories' must be a list of names"),
        (line(categories=["cs.AI", ""]), r"field 'categories' must be a category name"),
        (line(primary={"cs": "AI"}), r"field 'primary' must be a string, got an object"),
        (line(published=20250101), r"field 'published' must be a string, got a number"),
        (line(published="garbage"), r"field 'published' must be a date as YYYY-MM-DD, got 'garbage'"),
        (line(update_date="13/11/2008"), r"field 'update_date' must be a date"),
        (line(versions="v1"), r"field 'versions' must be a list of \{version, created\} objects, got 'v1'"),
        (line(versions={"v1": 1}), r"field 'versions' must be a list of \{version, created\} objects, got an object"),
        (line(versions=[{"created": 5}]), r"field 'versions\[0\]\.created' must be a date string, got a number"),
        (line(versions=[{"created": "yesterday"}]), r"field 'versions\[0\]\.created' must be a date like"),
        (line(authors_parsed="Smith, J."), r"field 'authors_parsed' must be a list of \[last, first, …\]"),
        (line(authors_parsed=[[1, 2]]), r"field 'authors_parsed' must be a list of \[last, first, …\]"),
        (line(authors=[{"name": "J. Smith"}]), r"field 'authors' must be a list of names or a string, got a list"),
    ],
)
def test_corrupt_lines_found_by_fuzzing(tmp_path: Path, raw: bytes, message: str) -> None:
    path = tmp_path / "snap.jsonl"
    path.write_bytes(line() + b"\n" + raw + b"\n")
    papers, err = read_all(path)
    assert [p.arxiv_id for p in papers] == ["2501.00001"]
    assert err is not None and re.search(message, str(err)), err
    assert_names_line(err, path, 2)


@pytest.mark.parametrize(
    "damage",
    [lambda packed: packed[: len(packed) // 2], lambda packed: packed[:-4], lambda packed: b"plain text\n"],
    ids=["cut-in-half", "cut-in-trailer", "not-gzip"],
)
def test_damaged_gzip_found_by_fuzzing(tmp_path: Path, damage) -> None:
    """EOFError, zlib.error and BadGzipFile escaped from reading a damaged .gz before the fix."""
    path = tmp_path / "snap.jsonl.gz"
    packed = gzip.compress(b"".join(line(id=f"2501.{i:05d}") + b"\n" for i in range(2_000)), mtime=0)
    path.write_bytes(damage(packed))
    papers, err = read_all(path)
    assert err is not None and re.search(r"\.jsonl\.gz, line \d+: cannot be read \(.+\); the file is cut", str(err))
    assert [p.arxiv_id for p in papers] == [f"2501.{i:05d}" for i in range(len(papers))]


def test_garbled_gzip_data_stops_at_the_first_bad_line(tmp_path: Path) -> None:
    """Deflate decodes damaged data into garbage before the CRC check can fail: the garbage line is named."""
    path = tmp_path / "snap.jsonl.gz"
    packed = bytearray(gzip.compress(b"".join(line(id=f"2501.{i:05d}") + b"\n" for i in range(2_000)), mtime=0))
    packed[len(packed) // 3 : len(packed) // 3 + 16] = b"\xff" * 16
    path.write_bytes(bytes(packed))
    papers, err = read_all(path)
    assert err is not None
    assert_names_line(err, path, len(papers) + 1)
    assert [p.arxiv_id for p in papers] == [f"2501.{i:05d}" for i in range(len(papers))]


def test_odd_but_valid_dates_are_normalised(tmp_path: Path) -> None:
    path = tmp_path / "snap.jsonl"
    path.write_bytes(line(published="2025-06-03T23:30:00+05:00", update_date="20250704") + b"\n")
    (paper,), err = read_all(path)
    assert err is None and (paper.published, paper.updated) == ("2025-06-03", "2025-07-04")
