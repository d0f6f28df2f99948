"""Did an answer fail: the "both failed" ties.

Why: on crowd sets such as llmfao a tie often means "both are bad", not "both are alike". An
answer fails in a few ways a reader sees at once, whatever the question: it stops mid-sentence
or inside an unclosed code block (truncated), it loops on the same phrases (degenerate
repetition), it refuses or only apologises, it is (nearly) empty, or it does not talk about the
prompt at all. Each side gets those flags and a count; the pair values say whether *both* sides
failed (the minimum over sides) and how far the better side is from failing, so P(tie) can rise
where neither answer is usable. Work per row is bounded (texts are cut at ``MAX_CHARS``).
"""

from __future__ import annotations

from features.text_view import FORMAT_PATTERNS, TextView, prompt_recall

MAX_CHARS = 8000  # flags are computed on an answer's first (repetition, refusal) or last (ending) 8,000 characters
MAX_WORDS = 2000  # repetition is measured on the first 2,000 words
NEAR_EMPTY_CHARS = 20
# an answer that ends on one of these stopped on purpose: sentence ends, closing brackets and quotes,
# a code fence or emphasis, a colon before a list it then gives, and the CJK full stops
CLOSED_ENDINGS = frozenset(".!?)]}>\"'`*:;\u3002\uff01\uff1f\u2026\u201d\u2019|")
OPEN_LINE_CHARS = 40  # a last line shorter than this (a list item, a sign-off) is not read as cut off
REPETITIVE_SHARE = 0.3  # share of repeated word 3-grams above which an answer loops
OFF_PROMPT_RECALL = 0.05  # an answer using under 5% of the prompt's words (prompt of >= 5 words) is off it
MIN_PROMPT_WORDS = 5


def _truncated(text: str) -> bool:
    """It stops mid-sentence (a long last line not closed by punctuation) or inside a code block."""
    tail = text[-MAX_CHARS:].rstrip()
    if not tail:
        return False
    if text.count("```") % 2 == 1:
        return True
    last_line = tail.rsplit("\n", 1)[-1].strip()
    return tail[-1] not in CLOSED_ENDINGS and len(last_line) >= OPEN_LINE_CHARS


def repeated_trigram_share(words: tuple[str, ...]) -> float:
    """Share of word 3-grams that repeat an earlier one: 0 for varied text, near 1 for a loop."""
    head = words[:MAX_WORDS]
    total = len(head) - 2
    if total <= 0:
        return 0.0
    return 1.0 - len(set(zip(head, head[1:], head[2:], strict=False))) / total


def no_side_values(view: TextView, prompt: TextView) -> dict[str, float]:
    """The group gives pair values only: A-against-B comparisons are the other groups' work."""
    return {}


def _assess(view: TextView, prompt: TextView) -> tuple[dict[str, bool], float, float]:
    """(failure flags, repetition share, prompt recall) of one answer."""
    head = view.text[:MAX_CHARS]
    repetition = repeated_trigram_share(view.words)
    recall = prompt_recall(view, prompt)
    flags = {
        "fail_truncated": _truncated(view.text),
        "fail_repetitive": repetition > REPETITIVE_SHARE,
        "fail_refuses": bool(FORMAT_PATTERNS["refusal"].search(head) or FORMAT_PATTERNS["apology"].search(head)),
        "fail_near_empty": len(view.text.strip()) < NEAR_EMPTY_CHARS,
        "fail_off_prompt": len(prompt.vocabulary) >= MIN_PROMPT_WORDS and recall < OFF_PROMPT_RECALL,
    }
    return flags, repetition, recall


def failure_side(view: TextView, prompt: TextView) -> dict[str, float]:
    """One answer's failure flags, its repetition share and the count of flags."""
    flags, repetition, _ = _assess(view, prompt)
    out = {k: float(v) for k, v in flags.items()}
    return {**out, "fail_repetition": repetition, "fail_count": float(sum(flags.values()))}


def failure_pair(a: TextView, b: TextView, prompt: TextView) -> dict[str, float]:
    (fa, ra, pa), (fb, rb, pb) = _assess(a, prompt), _assess(b, prompt)
    both = {f"pair_both_{k[len('fail_') :]}": float(fa[k] and fb[k]) for k in fa}
    ca, cb = float(sum(fa.values())), float(sum(fb.values()))
    return {
        **both,
        "pair_min_fail_count": min(ca, cb),
        "pair_max_fail_count": max(ca, cb),
        "pair_min_repetition": min(ra, rb),
        "pair_max_prompt_recall": max(pa, pb),
    }
