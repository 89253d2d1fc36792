"""Read WordNet 3.0 noun synsets by ImageNet id, straight from Debian's wordnet-base files.

An ImageNet id such as ``n02123045`` is ``n`` plus the byte offset of the synset's line in
``data.noun``, so a lookup is a seek and one line parse. Used only to (re)build the catalogue.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATA_NOUN = Path("/usr/share/wordnet/data.noun")
HYPERNYM_POINTERS = ("@", "@i")  # hypernym and instance hypernym


@dataclass(frozen=True)
class Synset:
    wnid: str
    lemmas: tuple[str, ...]
    hypernyms: tuple[str, ...]
    gloss: str


class WordNetNouns:
    """Random access to noun synsets of a WordNet ``data.noun`` file."""

    def __init__(self, data_noun: Path = DEFAULT_DATA_NOUN) -> None:
        if not data_noun.exists():
            raise FileNotFoundError(
                f"{data_noun} not found: install Debian's wordnet-base (apt install wordnet-base)"
            )
        self._bytes = data_noun.read_bytes()
        self._cache: dict[str, Synset] = {}

    def synset(self, wnid: str) -> Synset:
        if wnid in self._cache:
            return self._cache[wnid]
        if not (wnid.startswith("n") and wnid[1:].isdigit()):
            raise ValueError(f"not a WordNet noun id: {wnid!r}")
        offset = int(wnid[1:])
        end = self._bytes.index(b"\n", offset)
        synset = parse_data_line(self._bytes[offset:end].decode("utf-8"))
        if synset.wnid != wnid:
            raise ValueError(f"{wnid} does not start a synset line in data.noun")
        self._cache[wnid] = synset
        return synset


def parse_data_line(line: str) -> Synset:
    """Parse one ``data.noun`` line: offset lex_filenum ss_type w_cnt (word lex_id)* p_cnt ..."""
    body, _, gloss = line.partition(" | ")
    fields = body.split()
    offset, word_count = fields[0], int(fields[3], 16)
    words = fields[4 : 4 + 2 * word_count : 2]
    pos = 4 + 2 * word_count
    pointer_count = int(fields[pos])
    pointers = fields[pos + 1 : pos + 1 + 4 * pointer_count]
    hypernyms = tuple(
        "n" + pointers[i + 1]
        for i in range(0, len(pointers), 4)
        if pointers[i] in HYPERNYM_POINTERS and pointers[i + 2] == "n"
    )
    lemmas = tuple(_clean_lemma(w) for w in words)
    return Synset("n" + offset, lemmas, hypernyms, gloss.strip())


def _clean_lemma(word: str) -> str:
    # Adjective markers like "(a)" never occur on nouns; underscores stand for spaces.
    return word.replace("_", " ")
