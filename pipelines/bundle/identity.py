"""What a bundle's predictions depend on outside the bundle, recorded at save and checked at load:
the feature code (its version and a fingerprint of its outputs on fixed battles of every length and
kind) and each LoRA encoder's base model (a hash of its ``config.json`` and a fingerprint of its weight
files).

Why: a bundle holds boosters fitted on feature columns and adapters fitted on a base model. Code
whose features changed, or a different base of the same shape, loads without complaint and predicts
something else (a base swap moved probabilities by up to 0.043 in a probe). Each check ends in one
line naming what differs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

# Fixed battles the feature fingerprint is computed on. Every feature group must have something to
# measure in every regime its code treats apart, or a change there passes unseen: short and long
# answers (past 1,500 characters, the readability cap of 4,000, the similarity cap of 8,000 and the
# prose cap of 20,000), several turns and empty (null) turns, long and multi-turn prompts, code, every
# markdown kind, non-Latin scripts (and the letters that match ASCII ignoring case), empty and
# identical answers, refusals and apologies. The long texts are built from the fixed words below by
# index arithmetic only: the same characters on every machine and library version.
_NOUNS = (
    "model answer algorithm river museum compiler garden teacher database mountain sentence library "
    "kernel violin harbour protocol recipe engine theorem village network painting question summary "
    "function window history bicycle variable ocean document server"
).split()
_VERBS = (
    "explains describes compiles measures improves ignores connects transforms organises remembers "
    "calculates protects questions supports replaces illustrates"
).split()
_ADJECTIVES = (
    "excellent terrible helpful confusing wonderful awful reliable broken pleasant dangerous simple "
    "complicated beautiful useless accurate misleading"
).split()
_ADVERBS = "quickly carefully rarely honestly slowly surprisingly clearly badly".split()
_SLIPS = (
    "It is a apple of an dog, and i think teh the answer is recieve .",
    "Sorry, I cannot help with that,but I apologise for the confusion !",
    "As an AI language model, I don't have access to real time data; i can't browse.",
)
_CYRILLIC = "модель ответ алгоритм река музей сад учитель база гора библиотека ядро скрипка гавань рецепт".split()
_CJK = ("模型", "答案", "算法", "河流", "博物馆", "编译器", "花园", "老师", "数据库", "山", "句子", "图书馆")


def _sentence(i: int) -> str:
    """The i-th sentence of the fixed prose: varied words, numbers, questions and slips."""
    n, v, a, d = len(_NOUNS), len(_VERBS), len(_ADJECTIVES), len(_ADVERBS)
    if i % 23 == 11:
        return _SLIPS[i % len(_SLIPS)]
    words = [
        _NOUNS[i % n].capitalize(),
        _VERBS[(3 * i + 1) % v],
        "the",
        _ADJECTIVES[(5 * i + 2) % a],
        _NOUNS[(7 * i + 3) % n],
    ]
    if i % 3 == 0:
        words += [_ADVERBS[(11 * i) % d], "with", str((37 * i) % 1000), _NOUNS[(13 * i + 5) % n] + "s"]
    if i % 4 == 1:
        words += ["because", "every", _NOUNS[(17 * i + 7) % n], _VERBS[(19 * i) % v], "it"]
    end = "?" if i % 9 == 4 else "!" if i % 13 == 6 else "."
    return " ".join(words) + end


def _prose(start: int, chars: int) -> str:
    """Paragraphs of fixed sentences from sentence ``start`` on, about ``chars`` characters long."""
    out, i, size = [], start, 0
    while size < chars:
        paragraph = " ".join(_sentence(k) for k in range(i, i + 5))
        out.append(paragraph)
        size += len(paragraph) + 2
        i += 5
    return "\n\n".join(out)


def _markdown(k: int) -> str:
    """One section with every markdown kind the formatting group counts."""
    return (
        f"## Section {k}\n\n{_prose(40 * k, 300)}\n\n- **{_NOUNS[k % 30]}**: *{_ADJECTIVES[k % 16]}* and `x_{k}`\n"
        f"- see [the docs](https://example.org/{k}) or http://example.com/p{k}\n* __{_VERBS[k % 16]}__ _first_\n\n"
        f"1. {_sentence(k + 1)}\n2) {_sentence(k + 2)}\n\n| col | value |\n|---|---|\n| {_NOUNS[k % 30]} | {k * 7} |\n"
    )


def _code(k: int) -> str:
    """A fenced and an indented code block."""
    return (
        f"```python\ndef f_{k}(n):\n    # {_sentence(k)}\n    return 1 if n < 2 else n * f_{k}(n - 1)\n```\n\n"
        f"    for i in range({k}):\n        print(i)\n"
    )


def _non_latin(words: tuple[str, ...] | list[str], count: int, sep: str) -> str:
    return sep.join(words[(7 * i) % len(words)] + ("。" if i % 9 == 8 else "") for i in range(count))


_LONG_MD = "\n".join(_markdown(k) for k in range(1, 6))  # ~3,500 characters, every markdown kind
_LONG_CODE = "\n".join(f"{_prose(200 + 10 * k, 500)}\n\n{_code(k)}" for k in range(8))  # ~6,000, code
_VERY_LONG = _prose(400, 9_000)  # past the similarity cap
_LONGEST = "# Report\n\n" + _prose(700, 21_000) + "\n\n" + _markdown(9)  # past the prose cap
_DOCUMENT = _prose(1000, 2_500)  # a long prompt: a pasted document
_RUSSIAN = _non_latin(_CYRILLIC, 320, " ") + " İstanbul, Straſse, 5 K, ı. ИЗВИНИТЕ, I CAN'T."
_CHINESE = _non_latin(_CJK, 200, "") + " مرحبا بالعالم Γειά σου κόσμε 😊 नमस्ते"

FINGERPRINT_BATTLES = pd.DataFrame(
    [
        (
            "fp-1",
            ["Explain recursion in Python with an example."],
            [
                "## Recursion\n\n- A function calls itself.\n- It needs a base case.\n\n```python\ndef f(n):\n"
                "    return 1 if n < 2 else n * f(n - 1)\n```\n**Summary**: done."
            ],
            ["Recursion is when a function calls itself. However, I cannot help with that."],
        ),
        (
            "fp-2",
            ["Translate 'good morning' to French.", "And to German?"],
            ["Bonjour.", "Guten Morgen!"],
            ["Bonjour, c'est « bonjour » — ça va ? 😊", ""],
        ),
        (
            "fp-3",
            ["Write a haiku about the sea."],
            ["Waves fold on the shore; salt wind carries gull voices; the tide keeps its time."],
            ["Waves fold on the shore; salt wind carries gull voices; the tide keeps its time."],
        ),
        (
            "fp-4",
            ["What is 2 + 2?"],
            ["4"],
            ["The answer is four, because 2 + 2 = 4. Finally, note that arithmetic is simple."],
        ),
        (
            "fp-long-markdown",
            ["Write a guide to databases with sections, lists and a table."],
            [_LONG_MD],
            [_prose(80, 1_800)],
        ),
        (
            "fp-long-code",
            ["Show several recursive functions in Python and explain each."],
            [_LONG_CODE],
            ["I'm sorry, but as an AI language model I can't write that code. My apologies!"],
        ),
        ("fp-very-long", ["Write a very long essay about rivers and compilers."], [_VERY_LONG], [_LONGEST]),
        (
            "fp-long-prompt",
            [_DOCUMENT, "Summarise it.", "Now in three bullet points."],
            [_prose(1000, 1_200), "", "- one\n- two\n- three"],
            [_prose(1500, 700), _prose(1600, 900), "1. one\n2. two\n3. three"],
        ),
        ("fp-non-latin", ["Расскажи о моделях. 请介绍一下模型。"], [_RUSSIAN], [_CHINESE]),
        ("fp-empty", ["Say nothing."], [""], [""]),
        ("fp-one-empty", [""], [""], [_prose(1700, 2_000)]),
        ("fp-identical-long", ["Describe a museum."], [_LONG_MD], [_LONG_MD]),
    ],
    columns=["id", "prompt_turns", "a_turns", "b_turns"],
)
DECIMALS = 6  # outputs rounded before hashing: the last float bits may differ across machines
WEIGHT_FILES = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.gguf")
SAMPLES, SAMPLE_BYTES = 16, 1 << 16  # weight fingerprint: 16 windows of 64 KiB per file, plus its size
VOLATILE_CONFIG_KEYS = ("_name_or_path", "transformers_version")  # where it was mounted, which writer


def _sha(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


# --------------------------------------------------------------------------- feature code


def feature_fingerprint(groups: tuple[str, ...] | list[str]) -> dict:
    """``{"version", "groups", "columns", "outputs_sha256"}`` of the handcrafted features on fixed battles."""
    from features.extractor import FEATURE_VERSION, FeatureExtractor

    X = FeatureExtractor(tuple(groups), n_jobs=1, cache_dir=None, progress=False).transform(FINGERPRINT_BATTLES)
    values = np.round(X.to_numpy(dtype=np.float64), DECIMALS)
    values = np.where(np.isnan(values), -7.0e300, values) + 0.0  # one NaN and one zero pattern
    payload = json.dumps(list(X.columns)).encode() + values.tobytes()
    return {
        "version": str(FEATURE_VERSION),
        "groups": list(groups),
        "columns": len(X.columns),
        "outputs_sha256": _sha(payload),
    }


def feature_difference(saved: dict, groups: tuple[str, ...] | list[str]) -> str | None:
    """Why the feature code running now is not the one the bundle was fitted with, or None."""
    now = feature_fingerprint(groups)
    if saved.get("version") != now["version"]:
        return f"feature version {saved.get('version')!r} in the bundle, {now['version']!r} in this code"
    if saved.get("columns") != now["columns"]:
        return f"{saved.get('columns')} feature columns in the bundle, {now['columns']} from this code"
    if saved.get("outputs_sha256") != now["outputs_sha256"]:
        return "the feature code gives other values on the fixed check battles than when the bundle was saved"
    return None


# --------------------------------------------------------------------------- encoder base models


def config_hash(model_dir: Path) -> str | None:
    """sha256 of the base's ``config.json`` (canonical JSON, without where it was mounted), or None."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        return None
    config = json.loads(path.read_text(encoding="utf-8"))
    for key in VOLATILE_CONFIG_KEYS:
        config.pop(key, None)
    return _sha(json.dumps(config, sort_keys=True, separators=(",", ":")).encode())


def weights_fingerprint(model_dir: Path) -> str | None:
    """A fingerprint of the weight files: each file's name, size and 16 evenly spaced 64 KiB windows.
    Reading gigabytes at every load is not an option; a different base (another fine-tune of the same
    architecture) differs in nearly every window."""
    files = sorted({p for pattern in WEIGHT_FILES for p in Path(model_dir).glob(pattern) if p.is_file()})
    if not files:
        return None
    h = hashlib.sha256()
    for path in files:
        size = path.stat().st_size
        h.update(f"{path.name}:{size}|".encode())
        with open(path, "rb") as handle:
            for k in range(SAMPLES):
                handle.seek(max(0, (size - SAMPLE_BYTES) * k // max(SAMPLES - 1, 1)))
                h.update(handle.read(SAMPLE_BYTES))
    return h.hexdigest()


def base_identity(model_dir: str | Path) -> dict:
    return {"config_sha256": config_hash(Path(model_dir)), "weights_fingerprint": weights_fingerprint(Path(model_dir))}


def base_difference(saved: dict, model_dir: str | Path) -> str | None:
    """What differs between the recorded base and the folder at ``model_dir`` (None: the same base)."""
    now = base_identity(model_dir)
    different = [what for what, key in (("config.json", "config_sha256"), ("weights", "weights_fingerprint"))
                 if saved.get(key) != now[key]]  # fmt: skip
    if not different:
        return None
    return " and ".join(different) + " differ from the base it was trained on"
