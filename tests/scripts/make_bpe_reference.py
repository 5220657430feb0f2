# SPDX-License-Identifier: MIT
"""Generates the expected values in tests/unit/bpe_tokenizer_test.cpp, independently of kvchat.

    pip install gguf tokenizers regex
    python tests/scripts/make_bpe_reference.py [path/to/SmolLM2-135M-Instruct.Q4_1.gguf]

Prints C++ initializers to paste into the test:
  * pre-tokenizer splits for each regex set, made with HF `tokenizers` pre-tokenizers using the
    patterns exactly as the models' tokenizer.json files write them, cross-checked against the
    Python `regex` module;
  * SmolLM2 token ids, made by a HF `tokenizers` BPE model built from the GGUF's own vocabulary
    and merges (read with the `gguf` package) and SmolLM2's pre-tokenization: every digit isolated,
    then ByteLevel (GPT-2 regex, no prefix space). No special tokens are registered, so text that
    spells "<|im_start|>" is tokenized as plain text, as kvchat's encode() must do.
"""

import os
import sys
import unicodedata

import regex
from gguf import GGUFReader
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
          r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
         r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
DIGIT = r"\p{N}"

REGEX_SETS = {
    "gpt2": [GPT2],
    "llama-bpe": [LLAMA3],
    "smollm": [DIGIT, GPT2],
    "qwen2": [QWEN2],
}

SPLIT_STRINGS = [
    "Hello world",
    "I'm here, you're there; they'll go. It's fine, we've done, I'd say",
    "DON'T SHOUT, I'M FINE. WE'LL SEE",
    "12345",
    "pi is 3.14159 and 1,000,000",
    "a  b   c",
    "line1\n\nline2\n",
    "\ttab\tseparated \t mixed",
    "trailing spaces   ",
    "   leading",
    "日本語のテキスト、句読点。",
    "emoji 🦙🚀 test 👍🏽",
    "مرحبا بالعالم",
    "café naïve résumé Ünïcödé",
    "e\u0301 combining",
    "x\u00a0y",
    "½ ² Ⅻ ٣٤",
    "if (x==1) {\r\n  return y;\r\n}",
    "  \n  \n",
    "hello!!! ...?",
    "it'\u017f K'S \u0130'LL",
]

ENCODE_STRINGS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "I'm here; DON'T panic, it's fine.",
    "12345 + 678 = 13023",
    "  multiple   spaces  ",
    "line1\n\nline2\n",
    "\ttabs\tand spaces",
    "日本語のテキスト、句読点。",
    "emoji 🦙🚀 test 👍🏽",
    "مرحبا بالعالم",
    "café naïve résumé Ünïcödé",
    "<|im_start|>user\nHi<|im_end|>",
    "def f(x):\n    return x ** 2\n",
    "https://example.com/path?q=1&r=2",
    "trailing space ",
    " leading space",
    "e\u0301 x\u00a0y",
    "ŁÓDŹ straße ẞ Ελληνικά кириллица",
    "supercalifragilisticexpialidocious",
    "The year 2024 had 366 days.",
    # Bytes without a token in SmolLM2's vocabulary (some C0 controls, and the lead bytes of planes
    # 4-11) are dropped, as HF BPE without an unk_token and llama.cpp drop them: not lossless.
    "a\x04b x \x04\x06 y | \x04> z",
    "\U00050000z",
]


def regex_split(patterns, text):
    """Sequential split with the Python regex module: matches and gaps, per fragment."""
    fragments = [text]
    for pattern in patterns:
        compiled = regex.compile(pattern)
        out = []
        for fragment in fragments:
            pos = 0
            for m in compiled.finditer(fragment):
                if m.start() > pos:
                    out.append(fragment[pos:m.start()])
                out.append(m.group())
                pos = m.end()
            if pos < len(fragment):
                out.append(fragment[pos:])
        fragments = out
    return fragments


def hf_split(patterns, text):
    pre = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(p), behavior="isolated", invert=False) for p in patterns])
    return [piece for piece, _ in pre.pre_tokenize_str(text)]


def cpp_string(text):
    """A C++ string literal; printable non-ASCII stays as UTF-8 so the test reads naturally."""
    out = ['"']
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch != " " and unicodedata.category(ch)[0] in "CZM":
            # invisible characters (controls, unassigned, spaces other than " ", combining marks):
            # octal escapes of their UTF-8 bytes (an octal escape ends after 3 digits)
            out.append("".join("\\%03o" % b for b in ch.encode("utf-8")))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def smollm2_tokenizer(path):
    reader = GGUFReader(path)
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    merges = reader.fields["tokenizer.ggml.merges"].contents()
    assert reader.fields["tokenizer.ggml.pre"].contents() == "smollm"
    vocab = {piece: i for i, piece in enumerate(tokens)}
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, ignore_merges=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(DIGIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    # SmolLM2's real tokenizer.json uses Digits(individual_digits=True) for the first step; check
    # that it splits the same way.
    digits = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    for text in ENCODE_STRINGS:
        assert digits.pre_tokenize_str(text) == tok.pre_tokenizer.pre_tokenize_str(text), text
    return tok


def main():
    print("// --- pre-tokenizer splits ---")
    for name, patterns in REGEX_SETS.items():
        print(f"    // {name}")
        for text in SPLIT_STRINGS:
            hf = hf_split(patterns, text)
            py = regex_split(patterns, text)
            if hf != py:
                print(f"// NOTE: tokenizers and regex disagree on {text!r}: {hf} vs {py}", file=sys.stderr)
            assert "".join(hf) == text
            items = ", ".join(cpp_string(p) for p in hf)
            print(f'    QTest::newRow("{name}/{SPLIT_STRINGS.index(text)}") << QString("{name}") '
                  f"<< std::string({cpp_string(text)}) << Pieces{{{items}}};")

    path = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser(
        "~/.cache/kvchat/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    tok = smollm2_tokenizer(path)
    print("// --- SmolLM2 encodings ---")
    for i, text in enumerate(ENCODE_STRINGS):
        ids = tok.encode(text).ids
        lossless = tok.decode(ids) == text
        print(f'    QTest::newRow("smollm2/{i}") << std::string({cpp_string(text)}) '
              f"<< Ids{{{', '.join(str(x) for x in ids)}}} << {'true' if lossless else 'false'};")


if __name__ == "__main__":
    main()
