"""Real text-pair datasets available offline, turned into pair JSONL (see `cube.textpairs`).

    chitchat   PyPI `chitchat-dataset` (MIT): 7,168 chats. A turn is one sender's consecutive
               messages joined; adjacent turns where the first ends in "?" and the reply has at least
               3 words make a pair (about 25k); with pairs="all", every adjacent turn -> reply pair
               whose reply has at least 3 words (about 121k). The group is the conversation id (so
               splits never share a chat) and the boolean `question` says whether the first turn
               ends in "?" (train on all pairs, score only question turns: eval_filter=question).
    wordnet    Debian `wordnet-base` (/usr/share/wordnet/data.{noun,verb,adj,adv}): one pair per
               synset (about 117k), "What is X?" (X its first lemma) -> the gloss's definition; the
               group is the lemma, so a word's several senses stay in one split.

Generated files are data, not source: they go under data/ (gitignored).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

WORDNET_DIR = Path("/usr/share/wordnet")
WORDNET_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")


class DatasetNotAvailable(ValueError):
    """The source of a dataset is not installed; the message says how to install it."""


def chitchat_turns(conversation: dict) -> list[tuple[str, str]]:
    """(sender, text) per turn: a `messages` entry is one sender's run of messages."""
    turns = []
    for run in conversation.get("messages", []):
        texts = [m.get("text", "").strip() for m in run if m.get("text", "").strip()]
        if texts:
            turns.append((run[0].get("sender", ""), " ".join(texts)))
    return turns


CHITCHAT_PAIRS = ("question", "all")


def chitchat_pairs(pairs: str = "question", min_reply_words: int = 3) -> Iterator[dict]:
    try:
        import chitchat_dataset
    except ImportError:
        raise DatasetNotAvailable("chitchat needs the Python package 'chitchat-dataset' (pip install chitchat-dataset)") from None
    if pairs not in CHITCHAT_PAIRS:
        raise ValueError(f"chitchat pairs must be one of {', '.join(CHITCHAT_PAIRS)}, got {pairs!r}")
    for conv_id, conversation in chitchat_dataset.Dataset().items():
        turns = chitchat_turns(conversation)
        for (_, turn), (_, reply) in zip(turns, turns[1:]):
            is_question = turn.endswith("?")
            if (is_question or pairs == "all") and len(reply.split()) >= min_reply_words:
                yield {"input": turn, "target": reply, "group": conv_id, "question": is_question}


def _wordnet_definition(gloss: str) -> str:
    # A gloss is "definition; another definition; "an example"": keep the definitions, not the examples.
    parts = [p.strip() for p in gloss.split(";")]
    return "; ".join(p for p in parts if p and not p.startswith('"')).strip()


def wordnet_pairs(directory: str | Path = WORDNET_DIR) -> Iterator[dict[str, str]]:
    directory = Path(directory)
    paths = [directory / name for name in WORDNET_FILES]
    if not all(p.is_file() for p in paths):
        raise DatasetNotAvailable(f"wordnet needs the Debian package 'wordnet-base' (apt-get install wordnet-base); "
                                  f"no data.noun/verb/adj/adv in {directory}")
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  ") or "|" not in line:  # licence header
                    continue
                fields, gloss = line.split("|", 1)
                parts = fields.split()
                n_words = int(parts[3], 16)  # w_cnt is two hex digits
                definition = _wordnet_definition(gloss)
                if not definition:
                    continue
                if n_words < 1:
                    continue
                # The first lemma names the synset; the others are synonyms with the same gloss.
                lemma = re.sub(r"\([a-z]+\)$", "", parts[4]).replace("_", " ")  # drops markers like (a)
                yield {"input": f"What is {lemma}?", "target": definition, "group": lemma.lower()}


DATASETS = {"chitchat": chitchat_pairs, "wordnet": wordnet_pairs}


def build_dataset(name: str, out: str | Path, **options) -> int:
    """Write the named dataset as pair JSONL; returns the number of pairs. `options` go to the
    dataset's builder (chitchat: pairs="question" or "all")."""
    from cube.textpairs import write_text_pairs_jsonl

    if name not in DATASETS:
        raise DatasetNotAvailable(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    rows = list(DATASETS[name](**options))  # fully built first, so a failure leaves no half-written file
    return write_text_pairs_jsonl(out, rows)
