"""Real datasets as text pairs: chitchat (turn -> reply, grouped by conversation) and WordNet."""
import json
from pathlib import Path

import pytest

from cube.datasets import WORDNET_DIR, DatasetNotAvailable, build_dataset, chitchat_turns, wordnet_pairs
from cube.textpairs import load_text_pairs

WORDNET_LINES = [
    "  1 This software and database is being provided to you, the LICENSEE, by  ",
    "00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 | that which is perceived or known or inferred to have its own distinct existence (living or nonliving)  ",
    "02084071 05 n 02 dog 0 domestic_dog 0 001 @ 02083346 n 0000 | a member of the genus Canis; \"the dog barked all night\"  ",
    "00001837 00 a 01 able(p) 0 000 | (usually followed by `to') having the necessary means; \"able to swim\"  ",
]


def test_chitchat_turns_join_each_senders_run():
    conversation = {"messages": [[{"text": "Hi", "sender": "a"}, {"text": "how are you?", "sender": "a"}],
                                 [{"text": "good thanks, you?", "sender": "b"}]]}
    assert chitchat_turns(conversation) == [("a", "Hi how are you?"), ("b", "good thanks, you?")]


def test_wordnet_parser_on_a_small_file(tmp_path):
    for name in ("data.noun", "data.verb", "data.adj", "data.adv"):
        (tmp_path / name).write_text("\n".join(WORDNET_LINES if name == "data.noun" else WORDNET_LINES[:1]) + "\n")
    pairs = list(wordnet_pairs(tmp_path))
    assert pairs[0] == {"input": "What is entity?", "target": "that which is perceived or known or inferred to have "
                        "its own distinct existence (living or nonliving)", "group": "entity"}
    assert pairs[1]["target"] == "a member of the genus Canis"  # the example sentence is left out
    assert pairs[2]["input"] == "What is able?"  # the adjective marker (p) is dropped


def test_wordnet_missing_says_which_package(tmp_path):
    with pytest.raises(DatasetNotAvailable, match="apt-get install wordnet-base"):
        list(wordnet_pairs(tmp_path / "absent"))


@pytest.mark.skipif(not (WORDNET_DIR / "data.noun").is_file(), reason="Debian package wordnet-base is not installed")
def test_cube_data_wordnet(tmp_path):
    from app.cli import main

    out = tmp_path / "wordnet.jsonl"
    assert main(["data", "wordnet", "--out", str(out)]) == 0
    tp = load_text_pairs(out)
    assert len(tp) > 100_000 and tp.inputs[0].startswith("What is ")


def test_cube_data_chitchat(tmp_path):
    from app.cli import main

    out = tmp_path / "chitchat.jsonl"
    assert main(["data", "chitchat", "--out", str(out)]) == 0
    tp = load_text_pairs(out)
    assert 20_000 < len(tp) < 30_000 and tp.groups is not None
    assert all(q.endswith("?") for q in tp.inputs[:200])
    assert all(len(a.split()) >= 3 for a in tp.targets[:200])
    assert len(set(tp.groups)) > 2_000  # about 3,200 of the 7,168 chats hold a question -> reply pair


def test_cube_data_chitchat_all_pairs_marks_the_question_turns(tmp_path):
    from app.cli import main

    questions, every = tmp_path / "q.jsonl", tmp_path / "all.jsonl"
    assert main(["data", "chitchat", "--out", str(questions)]) == 0
    assert main(["data", "chitchat", "--pairs", "all", "--out", str(every)]) == 0
    q, a = load_text_pairs(questions), load_text_pairs(every)
    assert 100_000 < len(a) < 140_000 and a.question is not None and a.groups is not None
    assert all(flag == text.endswith("?") for flag, text in zip(a.question, a.inputs))
    assert all(len(t.split()) >= 3 for t in a.targets)
    # The question rows of the full export are exactly the default export, with the same groups.
    marked = {(x, y, g) for x, y, g, f in zip(a.inputs, a.targets, a.groups, a.question) if f}
    assert marked == set(zip(q.inputs, q.targets, q.groups)) and all(q.question)


def test_pairs_option_is_for_chitchat_only(tmp_path, capsys):
    from app.cli import main

    assert main(["data", "wordnet", "--pairs", "all", "--out", str(tmp_path / "w.jsonl")]) != 0
    assert "--pairs applies to chitchat only" in capsys.readouterr().err
