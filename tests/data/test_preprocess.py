from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from clf import DEFAULT_CATEGORIES
from clf.data.preprocess import (
    DatasetPreprocessor,
    LeakageError,
    SplitError,
    check_no_leakage,
    content_hash,
    english_ratio,
    normalised_title_hash,
)
from clf.data.snapshot import paper_from_snapshot_record
from clf.data.validation import DataValidationError
from clf.io import DataFileError, read_json, read_jsonl, sha256_of_strings, write_json_atomic, write_jsonl_atomic

INDONESIAN = "0807.4609"
DUPLICATE_TITLES = ("2506.23629", "2512.01465")  # the one pair of distinct papers in the shared data with one title


def to_sample(record: dict[str, Any]) -> dict[str, Any]:
    return paper_from_snapshot_record(record).to_sample()


def write_raw(data_dir: Path, samples: list[dict[str, Any]]) -> Path:
    path = data_dir / "raw" / "arxiv" / "classification_dataset.jsonl"
    write_jsonl_atomic(path, samples)
    return path


def load(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    data = read_json(path)
    return data["metadata"], data["samples"]


@pytest.fixture(scope="module")
def papers(shared_papers_path: Path) -> dict[str, dict[str, Any]]:
    """Every shared paper by id: one streaming pass, so tests can pick real papers with known quirks."""
    return {record["id"]: record for _, record in read_jsonl(shared_papers_path)}


@pytest.fixture(scope="module")
def corpus(papers: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """515 real samples, the first 20, 27, ..., 83 of each default category, so class sizes differ."""
    wanted = {category: 20 + 7 * i for i, category in enumerate(DEFAULT_CATEGORIES)}
    samples = []
    for record in papers.values():
        if wanted.get(record["primary"], 0) > 0 and record["id"] not in (INDONESIAN, *DUPLICATE_TITLES):
            wanted[record["primary"]] -= 1
            samples.append(to_sample(record))
    assert not any(wanted.values())
    return samples


# --- clean_text ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prose",
    [
        "We compile C++ and C# code, e.g. parsers, i.e. front ends.",
        "Accuracy rose by 3.5% and the F1-score by 2 points over GPT-4o.",
        "Data from the U.S. census feed a k-NN model... and it works.",
        "std::vector and malloc() differ; .NET does too.",
        "Roughly ~ 4000 processors (about 10%) were used: see Section 2.",
    ],
)
def test_clean_text_keeps_ordinary_prose(prose: str) -> None:
    assert DatasetPreprocessor.clean_text(prose) == prose


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        (r"\textbf{Fast} and \emph{robust} with \textit{x} and \texttt{y}", "Fast and robust with x and y"),
        (r"{\em ad hoc} networks and \textbf{\emph{nested}} marks", "ad hoc networks and nested marks"),
        (r"prior work~\cite{a, b} fails\label{sec:x}, as in~\citep[p.~3]{c}.", "prior work fails, as in."),
        (
            r"accuracy of 95\% on \& off, cost \$5, item \#3, snake\_case",
            "accuracy of 95% on & off, cost $5, item #3, snake_case",
        ),
        (r"Schr\"odinger, moir\'e, {\"u}ber, F\`ux\`i", "Schrodinger, moire, uber, Fuxi"),
        (
            r"$k$-NN with $n$-gram features, $100$ trees and $95\%$ recall",
            "k-NN with n-gram features, 100 trees and 95% recall",
        ),
        (r"a $2\times$ speedup in $O(n \log n)$ time; $$x^2 + y^2$$ done", "a speedup in time; done"),
        (r"client \(C_0\) sends to the \(k\) nearest", "client sends to the k nearest"),
        ("Code is available at https://github.com/x/y.", "Code is available at."),
        ("See www.example.com/page, and (http://example.org) too.", "See, and too."),
        (r"Code at \href{https://x.io/a_b}{GitHub} and \url{http://y.org/~me}.", "Code at GitHub and."),
        ("Wow!!! Really?? Yes,, no.... ok", "Wow! Really? Yes, no... ok"),
        ("Fig.~3 shows\n\n  a   result", "Fig. 3 shows a result"),
    ],
)
def test_clean_text_strips_markup(raw: str, clean: str) -> None:
    assert DatasetPreprocessor.clean_text(raw) == clean


REAL_CLEANING = {
    # id: (what the cleaned abstract must contain, what it must not)
    "cmp-lg/9607037": (["fooled by indirect associations --- pairs", "exceeding 90%, as", "over 99% correct"], ["\\"]),
    "cs/0003053": (["cryptosystem proposed in is not secure"], ["cite", "CL1"]),
    "1403.7791": (["POSH can be downloaded from."], ["url", "http", "lipn", "~"]),
    "2504.15756": (["moire artifacts", "Dual-Stream Demoireing Network (DSDNet)"], ["\\'"]),
    "2311.06574": (["notion of Word Linear Complexity (WLC) of vector", "at a given y in"], ["$", "\\", "sule322"]),
    "2505.05223": (["style objectives–including efficiency", "aggressiveness–without"], ["unicode", "$"]),
    "2601.11608": (["512 for efficient execution. oneDNN framework", "entirely post-training without"], ["{", "\\"]),
    "2212.11394": (["ciphertext of one client to another client, who"], ["C_0", "\\("]),
    "1509.02640": (["data centers in 2010 was $11.5 billion"], ["\\"]),
    "1506.07584": (["an ad hoc network of N timepieces", "synchronizing an N-node network"], ["~", "$"]),
    "2305.17091": (["MaskFormer, etc. We", "are available at SSSegmenation."], ["href", "github"]),
}


@pytest.mark.parametrize("arxiv_id", sorted(REAL_CLEANING))
def test_clean_text_on_real_abstracts(papers: dict[str, dict[str, Any]], arxiv_id: str) -> None:
    cleaned = DatasetPreprocessor.clean_text(papers[arxiv_id]["abstract"])
    present, absent = REAL_CLEANING[arxiv_id]
    for fragment in present:
        assert fragment in cleaned
    for fragment in absent:
        assert fragment not in cleaned


def test_clean_text_leaves_no_markup_in_real_corpus(corpus: list[dict[str, Any]]) -> None:
    for sample in corpus:
        raw = sample["abstract"]
        cleaned = DatasetPreprocessor.clean_text(raw)
        assert not any(mark in cleaned for mark in ("\\", "{", "}", "http", "  ")), sample["arxiv_id"]
        # Cleaning removes markup, not prose.
        assert len(cleaned.split()) >= 0.8 * len(raw.split()), sample["arxiv_id"]


# --- deduplicate_samples ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("opener", ["\\(", "\\["])
def test_clean_text_stays_linear_on_math_that_never_closes(opener: str) -> None:
    # Openers without a closer once cost a scan to the end of the text each: quadratic, 0.75 s for 20,000 characters,
    # with the HTTP event loop blocked meanwhile. Eight times the text must cost far less than 64 times the time.
    def seconds(count: int) -> float:
        text = opener * count
        runs = []
        for _ in range(3):
            started = time.perf_counter()
            DatasetPreprocessor.clean_text(text)
            runs.append(time.perf_counter() - started)
        return min(runs)

    assert seconds(40_000) < 24 * seconds(5_000) + 0.05
    assert DatasetPreprocessor.clean_text("Let \\(a+b\\) hold, \\( unclosed") == "Let hold, unclosed"


def test_dedup_by_id_keeps_first(corpus: list[dict[str, Any]]) -> None:
    first, second = corpus[0], corpus[1]
    repeat = {**first, "text": "another version of the same paper", "arxiv_id": first["arxiv_id"] + "v2"}
    kept = DatasetPreprocessor().deduplicate_samples([first, second, repeat, dict(second)])
    assert kept == [first, second]


def test_dedup_by_title_ignores_case_and_punctuation(papers: dict[str, dict[str, Any]]) -> None:
    first, second = (to_sample(papers[i]) for i in DUPLICATE_TITLES)
    shouty = {**to_sample(papers[INDONESIAN]), "arxiv_id": "2601.00001", "title": first["title"].upper() + "!"}
    other = to_sample(papers["cs/0003053"])
    kept = DatasetPreprocessor().deduplicate_samples([first, other, second, shouty])
    assert [s["arxiv_id"] for s in kept] == [DUPLICATE_TITLES[0], "cs/0003053"]
    assert normalised_title_hash("Deep-Learning, for X!") == normalised_title_hash("deep learning for x")


def test_dedup_keeps_distinct_titles_without_latin_letters(corpus: list[dict[str, Any]]) -> None:
    a = {**corpus[0], "title": "深度学习"}
    b = {**corpus[1], "title": "机器翻译"}
    assert DatasetPreprocessor().deduplicate_samples([a, b]) == [a, b]


# --- filter_by_quality -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def english(papers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return to_sample(papers["1509.02640"])


@pytest.mark.parametrize("kind", ["empty", "label", "short", "non_english"])
def test_filter_removes_each_kind(papers: dict[str, dict[str, Any]], english: dict[str, Any], kind: str) -> None:
    bad = {
        "empty": {**english, "arxiv_id": "x", "text": "   "},
        "label": to_sample(next(p for p in papers.values() if p["primary"] == "math.NA")),
        "short": {**english, "arxiv_id": "x", "text": "Short note. We study graphs and the results are good."},
        "non_english": to_sample(papers[INDONESIAN]),
    }[kind]
    assert DatasetPreprocessor().filter_by_quality([english, bad]) == [english]


def test_filter_min_words_can_be_overridden(english: dict[str, Any]) -> None:
    short = {**english, "arxiv_id": "x", "text": "Short note. We study graphs and the results are good."}
    preprocessor = DatasetPreprocessor()
    assert preprocessor.filter_by_quality([short], min_words=10) == [short]
    assert DatasetPreprocessor(min_words=11).filter_by_quality([short]) == []


def test_english_ratio_separates_real_abstracts(
    papers: dict[str, dict[str, Any]], corpus: list[dict[str, Any]]
) -> None:
    assert english_ratio(to_sample(papers[INDONESIAN])["text"]) < 0.05
    assert min(english_ratio(s["text"]) for s in corpus) >= 0.13
    assert english_ratio("12 345 $$") == 0.0


# --- preprocess_dataset ----------------------------------------------------------------------------------------


def test_preprocess_dataset_records_every_step(
    tmp_path: Path, papers: dict[str, dict[str, Any]], corpus: list[dict[str, Any]]
) -> None:
    injected = [
        {**corpus[3], "text": "a repeat"},  # same id
        *(to_sample(papers[i]) for i in DUPLICATE_TITLES),  # same title: the second goes
        {**corpus[5], "arxiv_id": "2601.00002", "title": r"\cite{x}", "abstract": r"$\alpha^2$"},  # empty once clean
        to_sample(next(p for p in papers.values() if p["primary"] == "math.NA")),  # label not in categories
        {**corpus[7], "arxiv_id": "2601.00003", "title": "Short", "abstract": "We study graphs, results are good."},
        to_sample(papers[INDONESIAN]),
    ]
    raw = corpus + injected
    raw_path = write_raw(tmp_path, raw)
    write_json_atomic(raw_path.parent / "manifest.json", {"num_samples": len(raw), "content_hash": "abc123"})
    raw_bytes = raw_path.read_bytes()

    path = DatasetPreprocessor(data_dir=tmp_path).preprocess_dataset()

    assert path == tmp_path / "processed" / "dataset.json"
    metadata, samples = load(path)
    assert metadata["input"] == str(raw_path)
    assert metadata["input_hash"] == "abc123"
    load_step, clean_step, dedup, quality, out_of_scope = metadata["steps"]
    assert [s["step"] for s in metadata["steps"]] == ["load", "clean", "dedup", "filter", "out_of_scope"]
    assert out_of_scope == {"step": "out_of_scope", "available": 1, "count": 1}
    oos_metadata, oos = load(tmp_path / "processed" / "out_of_scope.json")
    assert [s["arxiv_id"] for s in oos] == [injected[4]["arxiv_id"]] and oos[0]["label"] == "math.NA"
    assert oos_metadata["num_samples"] == 1 and oos_metadata["content_hash"] == content_hash(oos)
    assert load_step["count"] == clean_step["count"] == len(raw)
    assert (dedup["removed_by_id"], dedup["removed_by_title"]) == (1, 1)
    assert dedup["count"] == len(raw) - 2
    assert (quality["removed_empty"], quality["removed_label"], quality["removed_non_english"]) == (1, 1, 1)
    assert quality["removed_short"] >= 1
    removed = sum(v for k, v in quality.items() if k.startswith("removed_"))
    assert quality["count"] == dedup["count"] - removed == metadata["num_samples"] == len(samples)
    assert sum(metadata["label_distribution"].values()) == len(samples)
    assert metadata["content_hash"] == content_hash(samples)

    ids = {s["arxiv_id"] for s in samples}
    assert DUPLICATE_TITLES[0] in ids
    assert not ids & {DUPLICATE_TITLES[1], "2601.00002", "2601.00003", INDONESIAN, injected[4]["arxiv_id"]}
    repeat = next(s for s in samples if s["arxiv_id"] == corpus[3]["arxiv_id"])
    assert repeat["text"] != "a repeat"
    for sample in samples:
        assert sample["text"] == f"{sample['title'].rstrip('.')}. {sample['abstract']}"
        assert "\\" not in sample["text"]
    assert raw_path.read_bytes() == raw_bytes
    assert sorted(p.name for p in raw_path.parent.iterdir()) == ["classification_dataset.jsonl", "manifest.json"]


def test_papers_of_other_categories_are_kept_aside_clean_capped_and_seeded(
    tmp_path: Path, papers: dict[str, dict[str, Any]], corpus: list[dict[str, Any]]
) -> None:
    long = [p for p in papers.values() if len(DatasetPreprocessor.clean_text(p["abstract"]).split()) > 120]
    others = [p for p in long if p["primary"] not in DEFAULT_CATEGORIES][:60]
    short = {**others[0], "id": "2601.00009", "title": "Tiny", "abstract": "Too short to keep."}
    # The raw file holds snapshot lines as they are (id, primary), which the preprocessor reads as samples.
    write_jsonl_atomic(tmp_path / "raw.jsonl", corpus + [*others, short])
    runs = []
    for folder in ("a", "b"):
        preprocessor = DatasetPreprocessor(data_dir=tmp_path / folder, out_of_scope_papers=25)
        preprocessor.preprocess_dataset(tmp_path / "raw.jsonl")
        runs.append(load(preprocessor.out_of_scope_path))

    (metadata, kept), (_, again) = runs
    assert kept == again, "the same seed draws the same papers"
    assert metadata["available"] == 60 and metadata["num_samples"] == len(kept) == 25
    assert {s["arxiv_id"] for s in kept} < {p["id"] for p in others}, "the short one was dropped, not kept aside"
    assert all(s["label"] not in DEFAULT_CATEGORIES and s["text"] for s in kept)
    assert [s["arxiv_id"] for s in kept] == sorted(s["arxiv_id"] for s in kept)
    _, in_scope = load(tmp_path / "a" / "processed" / "dataset.json")
    assert in_scope and not {s["arxiv_id"] for s in in_scope} & {s["arxiv_id"] for s in kept}


def test_corrupt_line_names_file_and_line(tmp_path: Path, corpus: list[dict[str, Any]]) -> None:
    raw_path = write_raw(tmp_path, corpus[:3])
    with raw_path.open("a", encoding="utf-8") as handle:
        handle.write('{"arxiv_id": "2501.0000\n')
    raw_bytes = raw_path.read_bytes()
    with pytest.raises(DataFileError, match=r"line 4") as info:
        DatasetPreprocessor(data_dir=tmp_path).preprocess_dataset()
    assert str(raw_path) in str(info.value)
    assert raw_path.read_bytes() == raw_bytes
    assert not (tmp_path / "processed").exists()


def test_missing_field_names_field_and_line(tmp_path: Path, corpus: list[dict[str, Any]]) -> None:
    broken = dict(corpus[1])
    del broken["label"]
    raw_path = write_raw(tmp_path, [corpus[0], broken, corpus[2]])
    with pytest.raises(DataFileError) as info:
        DatasetPreprocessor(data_dir=tmp_path).preprocess_dataset(raw_path)
    assert f"{raw_path}, line 2: missing field 'label'" in str(info.value)


def test_nothing_left_after_filtering_points_at_categories(tmp_path: Path, corpus: list[dict[str, Any]]) -> None:
    write_raw(tmp_path, corpus[:20])
    with pytest.raises(DataValidationError, match=r"no sample is left.*--categories \(cs\.XX\)"):
        DatasetPreprocessor(data_dir=tmp_path, categories=["cs.XX"]).preprocess_dataset()


# --- create_train_val_test_split -------------------------------------------------------------------------------


def test_split_is_stratified_80_10_10(tmp_path: Path, corpus: list[dict[str, Any]]) -> None:
    paths = DatasetPreprocessor(data_dir=tmp_path).create_train_val_test_split(corpus)

    assert paths == {name: tmp_path / "splits" / f"{name}.json" for name in ("train", "val", "test")}
    overall = Counter(s["label"] for s in corpus)
    splits = {name: load(path) for name, path in paths.items()}
    counts = {name: Counter(s["label"] for s in samples) for name, (_, samples) in splits.items()}
    for label, total in overall.items():
        assert abs(counts["val"][label] - 0.1 * total) <= 1, label
        assert abs(counts["test"][label] - 0.1 * total) <= 1, label
        # train takes what val and test leave, so it carries both their roundings
        assert abs(counts["train"][label] - 0.8 * total) <= 2, label
        assert counts["train"][label] + counts["val"][label] + counts["test"][label] == total
    for name, (metadata, samples) in splits.items():
        for label, total in overall.items():
            assert abs(counts[name][label] / len(samples) - total / len(corpus)) <= 1.5 / len(samples)
        ids = [s["arxiv_id"] for s in samples]
        assert ids == sorted(ids)
        assert metadata == {
            "split": name,
            "count": len(samples),
            "seed": 42,
            "fractions": {"train": 0.8, "val": 0.1, "test": 0.1},
            "label_distribution": dict(sorted(counts[name].items())),
            "ids_hash": sha256_of_strings(ids),
            "dataset_hash": content_hash(corpus),
        }


def test_same_seed_gives_identical_files(tmp_path: Path, corpus: list[dict[str, Any]]) -> None:
    first = DatasetPreprocessor(data_dir=tmp_path / "a", seed=7).create_train_val_test_split(corpus)
    again = DatasetPreprocessor(data_dir=tmp_path / "b", seed=7).create_train_val_test_split(list(corpus))
    other = DatasetPreprocessor(data_dir=tmp_path / "c", seed=8).create_train_val_test_split(corpus)
    for name in first:
        assert first[name].read_bytes() == again[name].read_bytes()
    val_ids = {name: {s["arxiv_id"] for s in load(paths["val"])[1]} for name, paths in [("a", first), ("c", other)]}
    assert val_ids["a"] != val_ids["c"]


def test_run_splits_the_processed_dataset_without_leakage(tmp_path: Path, corpus: list[dict[str, Any]]) -> None:
    write_raw(tmp_path, corpus)
    paths = DatasetPreprocessor(data_dir=tmp_path).run()

    processed, samples = load(tmp_path / "processed" / "dataset.json")
    splits = {name: load(path) for name, path in paths.items()}
    ids = {name: {s["arxiv_id"] for s in part} for name, (_, part) in splits.items()}
    titles = {name: {normalised_title_hash(s["title"]) for s in part} for name, (_, part) in splits.items()}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not ids[a] & ids[b]
        assert not titles[a] & titles[b]
    assert set().union(*ids.values()) == {s["arxiv_id"] for s in samples}
    assert all(metadata["dataset_hash"] == processed["content_hash"] for metadata, _ in splits.values())


def test_leakage_check_names_the_papers(corpus: list[dict[str, Any]]) -> None:
    a, b, c = corpus[:3]
    check_no_leakage({"train": [a, b], "test": [c]})
    with pytest.raises(LeakageError, match=rf"{a['arxiv_id']} is in both train and test") as info:
        check_no_leakage({"train": [a, b], "test": [c, {**a, "arxiv_id": a["arxiv_id"] + "v2"}]})
    assert info.value.ids == [a["arxiv_id"]]
    same_title = {**c, "arxiv_id": "2601.00009", "title": b["title"].lower()}
    with pytest.raises(LeakageError, match=rf"2601.00009 \(val\) has the same title as {b['arxiv_id']} \(train\)"):
        check_no_leakage({"train": [a, b], "val": [same_title]})


def test_small_class_is_refused_with_the_fix(tmp_path: Path, corpus: list[dict[str, Any]]) -> None:
    db = [s for s in corpus if s["label"] == "cs.DB"][:9]
    rest = [s for s in corpus if s["label"] in ("cs.CL", "cs.LG")]
    preprocessor = DatasetPreprocessor(data_dir=tmp_path, categories=["cs.CL", "cs.LG", "cs.DB"])
    with pytest.raises(SplitError) as info:
        preprocessor.create_train_val_test_split(rest + db)
    message = str(info.value)
    assert "cs.DB has 9" in message and "at least 10" in message
    assert "Collect more papers" in message and "--categories" in message
    assert not (tmp_path / "splits").exists()

    looser = DatasetPreprocessor(
        data_dir=tmp_path, categories=["cs.CL", "cs.LG", "cs.DB"], val_fraction=0.2, test_fraction=0.2
    )
    paths = looser.create_train_val_test_split(rest + db)
    assert Counter(s["label"] for s in load(paths["val"])[1])["cs.DB"] >= 1


def test_split_needs_the_processed_dataset(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match=r"not found\. Run `clf preprocess --data-dir"):
        DatasetPreprocessor(data_dir=tmp_path).create_train_val_test_split()


def test_split_rejects_labels_outside_categories(tmp_path: Path, corpus: list[dict[str, Any]]) -> None:
    with pytest.raises(DataValidationError, match=r"samples: \d+ of 515 samples are invalid"):
        DatasetPreprocessor(data_dir=tmp_path, categories=["cs.CL"]).create_train_val_test_split(corpus)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"val_fraction": 0.7}, "val_fraction must be in (0, 0.5), got 0.7"),
        ({"test_fraction": 0}, "test_fraction must be in (0, 0.5), got 0"),
        ({"min_words": 0}, "min_words must be an integer >= 1, got 0"),
        ({"min_english_ratio": 1.5}, "min_english_ratio must be in [0, 1], got 1.5"),
        ({"out_of_scope_papers": -1}, "out_of_scope_papers must be an integer >= 0, got -1"),
        ({"seed": -1}, "seed must be an integer in [0, 2**32), got -1"),
        ({"categories": []}, "categories must be a non-empty list"),
        ({"categories": ["cs.CL", "cs.CL"]}, "categories lists cs.CL more than once"),
    ],
)
def test_bad_options_are_named(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        DatasetPreprocessor(**options)
    assert message in str(info.value)


def test_defaults_follow_the_package(tmp_path: Path) -> None:
    preprocessor = DatasetPreprocessor(data_dir=str(tmp_path))
    assert preprocessor.categories == DEFAULT_CATEGORIES
    assert preprocessor.raw_path == tmp_path / "raw" / "arxiv" / "classification_dataset.jsonl"
    assert preprocessor.processed_path == tmp_path / "processed" / "dataset.json"
    assert preprocessor.split_paths["val"] == tmp_path / "splits" / "val.json"
