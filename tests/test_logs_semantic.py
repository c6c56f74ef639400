"""Semantic template representations and the detectors on them: Events, the template-vector
cache, the unseen-template score, the sequence and bag detectors, LogModel's unseen-line ids
and the parser-free mode. Most tests use the lexical "hashing" embedder (no model); one
module-scoped fixture loads all-MiniLM-L6-v2 once for the tests that are about its meaning."""

from __future__ import annotations

import numpy as np
import pytest

from normalcy.core.errors import DataError, ModelFileError
from normalcy.core.modelfile import load
from normalcy.logs import DeepLog, InvariantsMining, LogModel, SemanticBag, SemanticSequence
from normalcy.logs.semantic import Events, HashingEmbedder, TemplateVectors, with_templates, words
from normalcy.text.embedding import Embedder

TEMPLATES = {1: "open file <PATH> for writing", 2: "write block <NUM> of <NUM> bytes", 3: "close file <PATH>",
             5: "ack block <NUM> written", 6: "retry write of block <NUM> after timeout"}
NEAR, FAR = 7, 9  # unseen: a rewording of 3, and a message of a new kind
UNSEEN_TEXTS = {NEAR: "closing the file <PATH>", FAR: "kernel panic: fatal machine check exception"}


def session(rng: np.random.Generator) -> list[int]:
    seq = [1]
    for _ in range(int(rng.integers(1, 4))):
        seq += [2, 5]
    if rng.random() < 0.3:
        seq.insert(int(rng.integers(1, len(seq) + 1)), 6)
    return seq + [3]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    table = {**TEMPLATES, **UNSEEN_TEXTS}
    fit = with_templates([session(rng) for _ in range(80)], TEMPLATES)
    normal = with_templates([session(rng) for _ in range(10)], table)
    near = with_templates([s[:-1] + [NEAR] for s in (session(rng) for _ in range(10))], table)
    far = with_templates([s[:-1] + [FAR, 3] for s in (session(rng) for _ in range(10))], table)
    return fit, normal, near, far


@pytest.fixture(scope="module")
def bag(data):
    return SemanticBag(embedder="hashing").fit(data[0])


@pytest.fixture(scope="module")
def seq(data):
    return SemanticSequence(embedder="hashing", window=4, hidden=16, epochs=30, batch_size=32, n_models=1).fit(data[0])


class Counting(Embedder):
    """HashingEmbedder that counts the texts it is asked to embed."""

    def __init__(self):
        self.inner, self.calls = HashingEmbedder(), []

    def embed(self, texts):
        self.calls.append(list(texts))
        return self.inner.embed(texts)

    def spec(self):
        return {"name": "counting"}


def test_events_are_id_arrays_that_keep_their_templates():
    events = with_templates([[1, 2, 3], [3]], TEMPLATES)
    assert events[0].templates is events[1].templates is TEMPLATES
    assert events[0][1:].templates is TEMPLATES  # a slice keeps the table
    plain = np.asarray(events[0])
    assert type(plain) is np.ndarray and plain.tolist() == [1, 2, 3]
    # Every other log detector reads them as event ids.
    fit = with_templates([[1, 2, 3]] * 5 + [[1, 2, 2, 3]] * 5, TEMPLATES)
    assert InvariantsMining().fit(fit).decision_function(with_templates([[1, 3], [1, 2, 3]], TEMPLATES))[1] == 0


def test_words_are_what_a_language_model_reads_of_a_template():
    assert words("ciod: Error loading <PATH>: invalid image, Permission denied") == \
        "ciod Error loading invalid image Permission denied"
    assert words("MailboxMonitor::serviceMailboxes() <*> closed") == "Mailbox Monitor service Mailboxes closed"
    assert words("<NUM> <*>") == "<NUM> <*>"  # no letters: kept as it is


def test_hashing_vectors_are_unit_length_and_lexical():
    v = HashingEmbedder().embed(["close file now", "closing the file now", "kernel panic fatal"])
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-6)
    assert v[0] @ v[1] > v[0] @ v[2]


def test_each_text_is_embedded_once_and_the_disk_cache_is_read_back(tmp_path):
    embedder = Counting()
    vectors = TemplateVectors(embedder, cache_dir=tmp_path, shared=False)
    first = vectors(["open file <PATH>", "close file <PATH>", "open file <PATH>"])
    again = vectors(["close file <PATH>", "open file <PATH>"])
    assert embedder.calls == [["open file", "close file"]]  # as words, each once
    np.testing.assert_array_equal(again, first[[1, 0]])
    fresh = Counting()
    reread = TemplateVectors(fresh, cache_dir=tmp_path, shared=False)(["open file <PATH>"])
    assert fresh.calls == [] and np.array_equal(reread[0], first[0])


@pytest.mark.parametrize("which", ["bag", "seq"])
def test_an_unseen_template_weighs_by_how_far_it_is_from_the_known_ones(which, data, request):
    detector = request.getfixturevalue(which)
    _, normal, near, far = data
    s_normal, s_near, s_far = (detector.decision_function(x) for x in (normal, near, far))
    assert np.median(s_near) < np.median(s_far)
    assert np.median(s_normal) < np.median(s_far)
    assert (s_far >= detector.threshold_).mean() > (s_normal >= detector.threshold_).mean()


def test_the_explanation_names_the_unseen_template_and_its_nearest_known_one(bag, data):
    why = bag.explain(data[3][:1])
    text = " ".join(why.evidence[0])
    assert "kernel panic: fatal machine check exception" in text and "never seen in training" in text
    assert why.parts[-1] == "unseen" and why.contributions[0, -1] > 0
    near = bag.explain(data[2][:1])
    assert "(E3;" in " ".join(near.evidence[0])  # "closing the file" is nearest to "close file"
    twice = bag.explain(with_templates([[1, 2, 5, FAR, 2, 5, FAR, 3]], {**TEMPLATES, **UNSEEN_TEXTS}))
    assert sum("never seen in training" in r for r in twice.evidence[0]) == 1  # one reason per template


def test_the_sequence_model_knows_the_order(seq, data):
    normal = data[1]
    swapped = with_templates([[3] + list(s[1:-1]) + [1] for s in normal], TEMPLATES)
    assert np.median(seq.decision_function(swapped)) > np.max(seq.decision_function(normal))


def test_an_ensemble_averages_its_networks_surprises(seq, data):
    from normalcy.logs.semantic import _Lookup

    pair = SemanticSequence(embedder="hashing", window=4, hidden=16, epochs=3, batch_size=32, n_models=2).fit(data[0])
    lookup = _Lookup(pair, list(data[3]), data[3][0].templates)
    both, owner = pair._surprise(list(data[3]), lookup)
    nets = pair.net_
    singles = []
    for net in nets:
        pair.net_ = type(nets)([net])
        singles.append(pair._surprise(list(data[3]), lookup)[0])
    pair.net_ = nets
    np.testing.assert_allclose(both, np.maximum((singles[0] + singles[1]) / 2, 0), rtol=1e-6, atol=1e-9)
    assert not np.allclose(singles[0], singles[1])  # two different networks


def test_fitting_needs_every_template_text():
    with pytest.raises(DataError, match="event 4 has none"):
        SemanticBag(embedder="hashing").fit(with_templates([[1, 2, 4], [1, 3]], TEMPLATES))
    with pytest.raises(DataError, match="template text"):
        SemanticBag(embedder="hashing").fit([[1, 2, 3], [1, 3]])


def test_ids_without_a_text_score_as_the_farthest_unseen_template(bag, data):
    plain = bag.decision_function([[1, 2, 5, 3], [1, 2, 5, 42]])
    assert np.isfinite(plain).all() and plain[1] > plain[0]
    _, _, novelty, _ = bag._combined([np.array([1, 42])], {})
    assert novelty[0].tolist() == [0.0, 1.0]


def test_a_loaded_model_embeds_nothing_for_known_templates(bag, data, tmp_path):
    path = bag.save(tmp_path / "bag")
    again = load(path)
    known_only = with_templates([[1, 2, 5, 3]], TEMPLATES)
    np.testing.assert_array_equal(again.decision_function(known_only), bag.decision_function(known_only))
    assert again._vectors is None  # the embedder was never needed
    np.testing.assert_allclose(again.decision_function(data[3]), bag.decision_function(data[3]), rtol=1e-12)


def test_a_model_file_with_mismatched_templates_is_refused(bag):
    arrays, meta = bag._get_state()
    broken = dict(arrays)
    broken["semantic.templates_utf8"] = np.frombuffer(b"only one", dtype=np.uint8).copy()
    with pytest.raises(ModelFileError, match="template texts"):
        SemanticBag(embedder="hashing")._set_state(broken, meta)


def hdfs_like(rng, n, unseen_every=0):
    lines = []
    for b in range(n):
        blk = f"blk_{1000 + b}"
        lines.append(f"allocateBlock /user/f{b} {blk}")
        for r in range(int(rng.integers(1, 4))):
            lines.append(f"Receiving block {blk} src: /10.0.0.{r}:50010")
        if unseen_every and b % unseen_every == 0:
            lines.append(f"Checksum error on block {blk} from /10.0.0.9:50010")
        lines.append(f"PacketResponder 1 for block {blk} terminating")
    return lines


@pytest.mark.parametrize("parser", ["drain", "masked"])
def test_log_model_gives_each_unseen_line_its_own_id_and_text(parser, tmp_path):
    rng = np.random.default_rng(0)
    model = LogModel("semantic-bag", group_by=r"blk_-?\d+", parser=parser,
                     detector_params={"embedder": "hashing"}).fit(hdfs_like(rng, 60))
    new = hdfs_like(rng, 10, unseen_every=5)
    analysis = model.analyse(new)
    seqs = model.sequences(analysis.records, analysis.event_ids, analysis.groups)
    unseen = [int(e) for s in seqs for e in s if e < 0]
    assert unseen and set(unseen) == {-1}  # one masked text, one id
    assert seqs[0].templates[-1] == "Checksum error on block <BLK> from /<IP>"
    flagged = analysis.scores[[0, 5]]
    assert (flagged > np.delete(analysis.scores, [0, 5]).max()).all()
    assert any("unseen: Checksum error" in t for t in analysis.explanation.evidence[0])
    again = load(model.save(tmp_path / f"m-{parser}"))
    np.testing.assert_allclose(again.decision_function(new), analysis.scores, rtol=1e-12)


def test_plain_detectors_still_get_plain_sequences():
    rng = np.random.default_rng(0)
    model = LogModel("deeplog", group_by=r"blk_-?\d+", detector_params={"epochs": 1, "hidden": 4, "layers": 1,
                                                                           "embedding": 2}).fit(hdfs_like(rng, 20))
    analysis = model.analyse(hdfs_like(rng, 5, unseen_every=2), explain=False)
    seqs = model.sequences(analysis.records, analysis.event_ids, analysis.groups)
    assert isinstance(model.detector_, DeepLog) and not isinstance(seqs[0], Events)
    assert min(int(s.min()) for s in seqs) == 0  # unseen lines keep id 0


@pytest.fixture(scope="module")
def minilm_vectors():
    from normalcy.text import minilm

    return TemplateVectors(minilm())


def test_with_minilm_a_reworded_template_lands_near_its_original(minilm_vectors):
    v = minilm_vectors(["Connection to <IP> closed by remote host", "remote host <IP> closed the connection",
                        "Disk quota exceeded for user <*>"])
    assert v[0] @ v[1] > 0.7 > v[0] @ v[2]
