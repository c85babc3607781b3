"""The plain-Python CLIP BPE gives open_clip's own token ids, without importing torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import open_clip
import pytest

from clipfind.bpe import ClipBPE

TEXTS = [
    "",
    " ",
    "a dog",
    "A DOG",
    "a photo of a dog on a beach.",
    "dog,cat;car|bird",
    "it's we'll I'm they've you'd she's",
    "3 kids, 12 cats and 3.14159 pies",
    "$100 & 50%",
    "Ünïcödé café naïve résumé",
    "日本語の文章です",
    "中文 한국어 русский ελληνικά עברית العربية",
    "emoji 😀🐶🏳️‍🌈 👩‍👩‍👧",
    "&amp;lt;b&amp;gt; &quot;quoted&quot; &#39;x&#39;",
    "<b>bold</b>",
    "Tab\tnew\nline\r\nend",
    "  many    spaces   ",
    "\x00\x07control\x1b[31mred",
    "<start_of_text>inside<end_of_text>",
    "mojibake: cafÃ© Ã©tÃ©",
    "ﬁne ligature",
    "ｆｕｌｌ width",
    "a" * 300,
    "word " * 100,
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "hyphen-ated under_scored dot.ted slash/ed",
    "#42 @user http://example.com/x?y=1",
]


@pytest.fixture(scope="module")
def tokenizers() -> tuple[ClipBPE, object]:
    return ClipBPE(), open_clip.get_tokenizer("ViT-B-32")


def test_same_ids_as_open_clip(tokenizers) -> None:  # type: ignore[no-untyped-def]
    """Unicode, HTML entities, control characters, special tokens typed as text, empty
    text, and texts longer than the context (cut, end-of-text kept last)."""
    plain, reference = tokenizers
    got, want = plain(TEXTS), reference(TEXTS).numpy()
    for text, a, b in zip(TEXTS, got, want, strict=True):
        assert np.array_equal(a, b), text
    long = got[TEXTS.index("word " * 100)]
    assert long[-1] == plain.eot and np.count_nonzero(long) == 77


def test_same_ids_on_random_text(tokenizers) -> None:  # type: ignore[no-untyped-def]
    """500 seeded random strings over ASCII, Latin, combining marks, CJK, emoji and
    control characters, with words longer than any cache would have seen."""
    plain, reference = tokenizers
    rng = np.random.default_rng(7)
    pools = [
        range(0x20, 0x7F),
        range(0xA0, 0x250),
        range(0x300, 0x370),
        range(0x4E00, 0x4F00),
        range(0x1F600, 0x1F650),
        range(0x00, 0x20),
        range(0x400, 0x500),
    ]
    texts = []
    for _ in range(500):
        chars = [
            chr(int(rng.choice(pools[int(rng.integers(len(pools)))])))
            for _ in range(int(rng.integers(0, 40)))
        ]
        texts.append("".join(chars))
    got, want = plain(texts), reference(texts).numpy()
    bad = [t for t, a, b in zip(texts, got, want, strict=True) if not np.array_equal(a, b)]
    assert not bad, bad[:3]


def test_other_context_length() -> None:
    short = ClipBPE(context_length=8)
    ref = open_clip.tokenizer.SimpleTokenizer(context_length=8)
    texts = ["a photo of a dog on a beach at sunset", "x"]
    assert np.array_equal(short(texts), ref(texts).numpy())


def test_imports_neither_torch_nor_open_clip() -> None:
    code = (
        "import sys; from clipfind.bpe import ClipBPE; ClipBPE()(['a dog']); "
        "print(sorted(m for m in ('torch', 'open_clip') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
