"""A small sequence model of one entity's event stream: DeepLog (Du et al. 2017) generalised
beyond log keys, as the flow-IDS papers run an LSTM per host.

An *event* is any integer id: a log template, or, on Spark (`fit_per_group(...,
modality="logs")`), the hash of any categorical fields of one row of an entity's stream (port
and protocol of a flow, process and action of an audit record), so one model reads whatever a
host, user or device does. A recurrent (GRU) or convolutional (two causal convolutions and a
max over the window) network reads the last `window` events and gives a probability to every
possible next event; a session's score is the largest *surprise*, -ln p, of its actual events
(an event never seen in training, or the end of the session where normal ones go on, is as
surprising as the model says). Unlike DeepLog's rank, a surprise is comparable across
vocabularies of any size, so one threshold rule serves entities with 5 or 5,000 distinct
events: the own rule flags an event the model gave less than `min_probability`, and
`fit_per_group`'s default is a 1 % false-alarm rate on held-out sessions.

Training uses the shared engine (`normalcy.core.training`): distinct (window, next event)
pairs weighted by their counts (DeepLog's loss, far fewer steps on repetitive streams),
`epochs` passes' worth of steps (at least `min_steps`), with a tenth of the sessions held out for early stopping on
their weighted loss when there are at least 10.
"""

from __future__ import annotations

import math

import numpy as np

from normalcy.core.detector import expect_arrays
from normalcy.core.errors import DataError, ModelFileError
from normalcy.logs.base import Blame, SequenceDetector, check_number
from normalcy.logs.sessions import next_token_pairs

KINDS = ("gru", "cnn")
_SCORE_CHUNK = 4096


class EntitySequence(SequenceDetector):
    """A GRU or causal CNN predicts each next event of a session from the last `window`; the
    session's score is its most surprising event's -ln p.

    Parameters:
        window: events read to predict the next (10).
        kind: "gru" (recurrent) or "cnn" (two causal convolutions, max over the window) ("gru").
        hidden: units of the GRU, channels of the convolutions (32).
        embedding: dimension of the event embedding (16).
        epochs: passes' worth of steps over the distinct training pairs (20).
        min_steps: at least this many steps, however few the distinct pairs (300).
        batch_size: pairs per Adam step (256).
        lr: Adam's learning rate (3e-3).
        min_probability: the own threshold flags an event less likely than this (1e-3).
        predict_end: also predict the end of a session, so one that stops early is anomalous (True).
        patience: validations without improvement before stopping early (4).
        threads: CPU threads for torch; None leaves torch's setting (1).
        seed: seed of the initialisation and of the batches (0).
    """

    name = "entity-sequence"

    def __init__(self, window: int = 10, kind: str = "gru", hidden: int = 32, embedding: int = 16, epochs: int = 20,
                 min_steps: int = 300, batch_size: int = 256, lr: float = 3e-3, min_probability: float = 1e-3, predict_end: bool = True,
                 patience: int = 4, threads: int | None = 1, seed: int = 0):
        self.window = window
        self.kind = kind
        self.hidden = hidden
        self.embedding = embedding
        self.epochs = epochs
        self.min_steps = min_steps
        self.batch_size = batch_size
        self.lr = lr
        self.min_probability = min_probability
        self.predict_end = predict_end
        self.patience = patience
        self.threads = threads
        self.seed = seed

    def _check_params(self):
        for name, high in (("window", 1000), ("hidden", 4096), ("embedding", 4096), ("epochs", 100_000),
                           ("min_steps", 10_000_000), ("batch_size", 1_000_000), ("patience", 100_000)):
            check_number("EntitySequence", name, getattr(self, name), 1, high, integer=True)
        check_number("EntitySequence", "lr", self.lr, 0.0, 10.0, low_open=True)
        check_number("EntitySequence", "min_probability", self.min_probability, 0.0, 1.0, low_open=True,
                     high_open=True)
        check_number("EntitySequence", "seed", self.seed, 0, 2 ** 63 - 1, integer=True)
        if self.threads is not None:
            check_number("EntitySequence", "threads", self.threads, 1, 4096, integer=True)
        if self.kind not in KINDS:
            raise DataError(f"EntitySequence kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not isinstance(self.predict_end, (bool, np.bool_)):
            raise DataError(f"EntitySequence predict_end must be true or false, got {self.predict_end!r}")

    # Token layout: 0..V-1 the vocabulary, V unseen, V+1 start/padding, V+2 end of session.
    def _n_tokens(self) -> int:
        return len(self.vocab_) + 3

    def _pairs(self, seqs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return next_token_pairs(seqs, self.vocab_, self.window, self.predict_end)

    def _weighted_pairs(self, seqs):
        import torch

        inputs, targets, _ = self._pairs(seqs)
        pairs, weights = np.unique(np.column_stack([inputs, targets]), axis=0, return_counts=True)
        return (torch.from_numpy(pairs[:, :-1].copy()), torch.from_numpy(pairs[:, -1].copy()),
                torch.from_numpy(weights.astype(np.float32)))

    def _fit_encoded(self, seqs):
        import torch

        from normalcy.core.training import seeded, train

        order = np.random.default_rng(self.seed).permutation(len(seqs))
        held = order[: len(seqs) // 10] if len(seqs) >= 10 else order[:0]
        fit = [seqs[i] for i in np.sort(order[len(held):])]
        x, y, w = self._weighted_pairs(fit)
        with seeded(self.seed):
            self.net_ = _Net(self.kind, self._n_tokens(), self.embedding, self.hidden, self.window)
        optimiser = torch.optim.Adam(self.net_.parameters(), lr=self.lr)
        loss_fn = torch.nn.CrossEntropyLoss(reduction="none")
        size = min(self.batch_size, len(y))

        def step(i):
            b = torch.randint(0, len(y), (size,))  # train seeds the global generator
            loss = (loss_fn(self.net_(x[b]), y[b]) * w[b]).sum() / w[b].sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            return loss.item()

        validate = None
        if len(held):
            vx, vy, vw = self._weighted_pairs([seqs[i] for i in held])
            validate = lambda: -float((loss_fn(self.net_(vx), vy) * vw).sum() / vw.sum())  # noqa: E731
        # A pass over a few distinct pairs is one step: a floor keeps small streams from being undertrained.
        steps = max(self.epochs * math.ceil(len(y) / size), self.min_steps)
        train(self.net_, step, max_steps=steps, validate=validate, validate_every=max(10, steps // 20),
              patience=self.patience if validate else None, seed=self.seed, threads=self.threads,
              desc="entity-sequence: training")
        self.set_threshold(-math.log(self.min_probability), f"an event of probability < {self.min_probability:g}")

    def _surprise(self, seqs) -> tuple[np.ndarray, np.ndarray]:
        """-ln p of each actual next token (per pair) and the pairs' sessions."""
        import torch

        from normalcy.core.threads import thread_limit

        self._check_fitted("net_")
        inputs, targets, owner = self._pairs(seqs)
        windows, inverse = np.unique(inputs, axis=0, return_inverse=True)
        logp = []
        with thread_limit(self.threads), torch.no_grad():
            for start in range(0, len(windows), _SCORE_CHUNK):
                chunk = torch.from_numpy(windows[start:start + _SCORE_CHUNK].copy())
                logp.append(torch.log_softmax(self.net_(chunk).double(), dim=1).numpy())
        logp = np.concatenate(logp)[inverse.reshape(-1)]
        return -logp[np.arange(len(targets)), targets], owner

    def _score_encoded(self, seqs):
        surprise, owner = self._surprise(seqs)
        starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        return np.maximum.reduceat(surprise, starts)

    def _explain_encoded(self, seqs, max_events):
        """The `max_events` most surprising events of each session, most surprising first (and
        the end of the session, when that was the most surprising), with their probabilities."""
        surprise, owner = self._surprise(seqs)
        out = []
        for g, seq in enumerate(seqs):
            s = surprise[owner == g]
            worst = [int(p) for p in np.argsort(-s, kind="stable")[:max_events]]
            positions = [p for p in worst if p < len(seq)]
            reasons = [f"event {int(seq[p])} at position {p} had probability {math.exp(-s[p]):.2g}" for p in positions]
            if worst[0] >= len(seq):
                reasons.insert(0, f"the session ended where normal ones go on (probability {math.exp(-s[-1]):.2g})")
            out.append(Blame(list(dict.fromkeys(int(seq[p]) for p in positions)), positions, reasons))
        return None, out  # a maximum is no sum over events: no per-event contributions

    def _own_state(self):
        self._check_fitted("net_")
        return {f"sequence.{k}": v.detach().cpu().numpy() for k, v in self.net_.state_dict().items()}, {}

    def _set_own_state(self, arrays, meta):
        import torch

        net = _Net(self.kind, len(self.vocab_) + 3, self.embedding, self.hidden, self.window)
        expected = {f"sequence.{k}": tuple(v.shape) for k, v in net.state_dict().items()}
        expect_arrays(arrays, expected)
        extra = sorted(k for k in arrays if k.startswith("sequence.") and k not in expected)
        if extra:
            raise ModelFileError(f"model state: unexpected EntitySequence arrays {', '.join(extra)}")
        net.load_state_dict({k[len("sequence."):]: torch.from_numpy(np.array(arrays[k], dtype=np.float32))
                             for k in expected})
        self.net_ = net.eval()


def _Net(kind: str, n_tokens: int, embedding: int, hidden: int, window: int):
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(n_tokens, embedding)
            if kind == "gru":
                self.gru = torch.nn.GRU(embedding, hidden, batch_first=True)
            else:
                # Causal: each output sees only its own and earlier positions (left padding).
                self.conv1 = torch.nn.Conv1d(embedding, hidden, 3)
                self.conv2 = torch.nn.Conv1d(hidden, hidden, 3, dilation=2)
            self.out = torch.nn.Linear(hidden, n_tokens)

        def forward(self, x):
            e = self.embed(x)
            if kind == "gru":
                h, _ = self.gru(e)
                return self.out(h[:, -1])
            h = torch.relu(self.conv1(torch.nn.functional.pad(e.transpose(1, 2), (2, 0))))
            h = torch.relu(self.conv2(torch.nn.functional.pad(h, (4, 0))))
            return self.out(h.max(dim=2).values)

    return Net()
