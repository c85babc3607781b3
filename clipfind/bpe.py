"""open_clip's CLIP BPE tokenizer in plain Python: the same ids as
``open_clip.tokenizer.SimpleTokenizer`` (default vocabulary, ``clean="lower"``), without
importing open_clip or torch, so a one-shot text query starts in a fraction of a second.

The algorithm is OpenAI CLIP's (MIT licence, Copyright (c) 2021 OpenAI), as open_clip
copies it; the vocabulary is open_clip's own ``bpe_simple_vocab_16e6.txt.gz``, located
with :func:`importlib.util.find_spec`, which finds a package without executing it
(``open_clip/__init__.py`` imports torch). ``tests/test_bpe.py`` checks the ids against
open_clip's tokenizer on many strings.
"""

from __future__ import annotations

import html
import importlib.util
import itertools
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
VOCAB_SIZE = 49408  # 256 bytes x 2 + 48894 merges + start/end of text
MERGES = VOCAB_SIZE - 512 - 2  # the merges open_clip uses: the file's first lines after its header
_PATTERN = (
    r"""<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|"""
    r"""[^\s\p{L}\p{N}]+"""
)


def vocab_path() -> Path | None:
    """open_clip's BPE vocabulary file, or None when open_clip is not installed."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / VOCAB_FILE
    return path if path.is_file() else None


@lru_cache(maxsize=1)
def _bytes_to_unicode() -> dict[int, str]:
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def merge_lines(path: Path) -> list[str]:
    """The first :data:`MERGES` merge lines ("first second") of the gzipped vocabulary:
    only the part of the file that holds them is inflated (a fifth of it)."""
    data = path.read_bytes()
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip
    text = inflate.decompress(data, 1 << 19)
    while text.count(b"\n") <= MERGES and (inflate.unconsumed_tail or not inflate.eof):
        more = inflate.decompress(inflate.unconsumed_tail, 1 << 19)
        if not more:
            break
        text += more
    lines = text.decode("utf-8").split("\n", MERGES + 1)[1 : MERGES + 1]
    if len(lines) != MERGES:
        raise ValueError(f"{path} holds {len(lines)} BPE merges, not {MERGES}")
    return lines


class ClipBPE:
    """``tokenizer(texts)`` → ``(n, context_length)`` int64 ids, zero-padded, cut to the
    context with the last id set to end-of-text (as open_clip does)."""

    def __init__(self, context_length: int = 77, path: Path | None = None) -> None:
        import regex

        path = path or vocab_path()
        if path is None:
            raise FileNotFoundError(f"open_clip's {VOCAB_FILE} was not found")
        merges = merge_lines(path)
        chars = list(_bytes_to_unicode().values())
        vocab = [
            *chars,
            *(c + "</w>" for c in chars),
            *(m.replace(" ", "") for m in merges),  # "a b": one space between two tokens
            "<start_of_text>",
            "<end_of_text>",
        ]
        # zip and range build the tables in C: a third of the time of comprehensions
        self.encoder = dict(zip(vocab, range(len(vocab)), strict=True))
        self.ranks = dict(zip(merges, range(len(merges)), strict=True))  # keyed "first second"
        self.cache: dict[str, list[int]] = {}
        self.sot, self.eot = self.encoder["<start_of_text>"], self.encoder["<end_of_text>"]
        self.context_length = context_length
        self._pattern = regex.compile(_PATTERN, regex.IGNORECASE)
        self._byte_map = _bytes_to_unicode()

    def _bpe(self, token: str) -> list[int]:
        hit = self.cache.get(token)
        if hit is not None:
            return hit
        word = (*token[:-1], token[-1] + "</w>")
        while len(word) > 1:
            pairs = {f"{a} {b}" for a, b in itertools.pairwise(word)}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            first, second = best.split(" ")
            merged: list[str] = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
        ids = [self.encoder[w] for w in word]
        self.cache[token] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        """Ids of one text, without start/end tokens."""
        out: list[int] = []
        for token in self._pattern.findall(clean(text)):
            if token in ("<start_of_text>", "<end_of_text>"):
                out.append(self.encoder[token])  # open_clip keeps these as they are
                continue
            out.extend(self._bpe("".join(self._byte_map[b] for b in token.encode("utf-8"))))
        return out

    def __call__(self, texts: str | list[str]) -> npt.NDArray[np.int64]:
        if isinstance(texts, str):
            texts = [texts]
        result = np.zeros((len(texts), self.context_length), np.int64)
        for row, text in enumerate(texts):
            ids = [self.sot, *self.encode(text), self.eot]
            if len(ids) > self.context_length:
                ids = ids[: self.context_length]
                ids[-1] = self.eot
            result[row, : len(ids)] = ids
        return result


def clean(text: str) -> str:
    """open_clip's ``clean="lower"``: ftfy, HTML entities twice, whitespace, lower case.
    Printable ASCII without ``&`` is what ftfy leaves as it is (its fixes need non-ASCII
    text, control characters or HTML entities; line breaks become spaces below anyway),
    so most queries skip importing ftfy, a third of a cold query's start-up."""
    if not (
        text.isascii()
        and "&" not in text
        and all(c >= " " or c in "\t\n\r" for c in text)
        and "\x7f" not in text
    ):
        import ftfy

        text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return " ".join(text.split()).strip().lower()
