"""Tiny, offline stand-ins for hub artefacts: a WordPiece tokenizer trained in a second on real abstracts."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import DistilBertTokenizerFast

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_tiny_tokenizer(directory: Path, texts: Iterable[str], vocab_size: int = 1000) -> Path:
    """Trains an uncased WordPiece tokenizer (DistilBERT's layout) on `texts` and saves it to `directory`.

    Returns:
        The directory, loadable with `AutoTokenizer.from_pretrained`.
    """
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    wrapped = DistilBertTokenizerFast(tokenizer_object=tokenizer, model_max_length=512)
    directory.mkdir(parents=True, exist_ok=True)
    wrapped.save_pretrained(directory)
    return directory
