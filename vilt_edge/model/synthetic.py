"""A small BERT-style tokenizer built in code, for models made from configs (no downloads).

    from vilt_edge.model.synthetic import build_tokenizer
    build_tokenizer().save("random-vilt/tokenizer.json")

The tests' tiny ViLTs and the benchmarks' random ViLT-B/32 use it: a bundle pads every question
to its text length, so a small vocabulary does not change the work a model does. Here rather
than in the tests' conftest so that benchmarks run with the documented extras alone (conftest
needs pytest).
"""

from __future__ import annotations

WORDS = (
    "what is the color of shape circle rectangle triangle red green blue yes no how many "
    "are there in image does contain a an left right picture two dogs cat on table man "
    "woman holding sitting standing of more than one at least"
).split()


def build_tokenizer():
    """A BERT-style uncased WordPiece tokenizer over a small vocabulary."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("?.,'!0123456789")
    pieces = ["##" + c for c in letters]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(special + WORDS + letters + pieces))}
    tokenizer = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return tokenizer
