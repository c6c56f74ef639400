"""DeepLog (Du et al., CCS 2017): an LSTM reads the last `window` events of a group and
predicts the next; in a normal run the event that comes is among the `top_k` most likely.
A group's score is the worst rank any of its events got (1 = the model's first guess), so it
is anomalous (threshold top_k + 1) as soon as one event is not in the top k; an event never
seen in training ranks last.

Beyond the paper, the model also predicts the end of the group (`predict_end`): a session
that stops where normal sessions never stop (an HDFS block whose write broke off) is then an
anomaly too. Groups are padded with a start token, so their first events are predicted too.

Training runs on distinct (window, next event) pairs weighted by how often each occurs,
which is the same loss as on all pairs but much faster on repetitive logs. CPU only;
`threads` caps torch's (and BLAS') threads while fitting and scoring.
"""

from __future__ import annotations

import numpy as np

from normalcy.core.detector import expect_arrays
from normalcy.core.errors import DataError, ModelFileError
from normalcy.core.progress import progress
from normalcy.core.threads import thread_limit
from normalcy.logs.base import Blame, SequenceDetector, check_number
from normalcy.logs.sessions import next_token_pairs


class DeepLog(SequenceDetector):
    """DeepLog (Du et al. 2017): an LSTM predicts each next event from the last `window`; a
    group's score is the worst rank its actual events got, an anomaly outside the top k.

    Parameters:
        window: events the LSTM reads to predict the next (10).
        top_k: an event ranked among the k most likely is normal; the threshold is top_k + 1 (9).
        hidden: LSTM units per layer (64).
        layers: LSTM layers (2).
        embedding: dimension of the event embedding (16).
        epochs: passes over the training pairs (30).
        batch_size: (window, next event) pairs per Adam step (256).
        lr: Adam's learning rate (2e-3).
        predict_end: also predict the end of a group, so one that stops early is anomalous (True).
        threads: CPU threads for torch while fitting and scoring; None leaves torch's setting (1).
        seed: seed of the initialisation and of the batch order (0).
    """

    name = "deeplog"

    def __init__(self, window: int = 10, top_k: int = 9, hidden: int = 64, layers: int = 2, embedding: int = 16,
                 epochs: int = 30, batch_size: int = 256, lr: float = 2e-3, predict_end: bool = True,
                 threads: int | None = 1, seed: int = 0):
        self.window = window
        self.top_k = top_k
        self.hidden = hidden
        self.layers = layers
        self.embedding = embedding
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.predict_end = predict_end
        self.threads = threads
        self.seed = seed

    # Token layout: 0..V-1 the vocabulary, V unseen, V+1 start/padding, V+2 end of group.
    def _n_tokens(self) -> int:
        return len(self.vocab_) + 3

    def _pairs(self, seqs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return next_token_pairs(seqs, self.vocab_, self.window, self.predict_end)

    def _check_params(self):
        for name, high in (("window", 1000), ("top_k", 100_000), ("hidden", 4096), ("layers", 8),
                           ("embedding", 4096), ("epochs", 100_000), ("batch_size", 1_000_000)):
            check_number("DeepLog", name, getattr(self, name), 1, high, integer=True)
        check_number("DeepLog", "lr", self.lr, 0.0, 10.0, low_open=True)
        check_number("DeepLog", "seed", self.seed, 0, 2 ** 63 - 1, integer=True)
        if self.threads is not None:
            check_number("DeepLog", "threads", self.threads, 1, 4096, integer=True)
        if not isinstance(self.predict_end, (bool, np.bool_)):
            raise DataError(f"DeepLog predict_end must be true or false, got {self.predict_end!r}")

    def _fit_encoded(self, seqs):
        import torch

        inputs, targets, _ = self._pairs(seqs)
        pairs, weights = np.unique(np.column_stack([inputs, targets]), axis=0, return_counts=True)
        x = torch.from_numpy(pairs[:, :-1])
        y = torch.from_numpy(pairs[:, -1])
        w = torch.from_numpy(weights.astype(np.float32))
        with thread_limit(self.threads):
            torch.manual_seed(self.seed)
            self.net_ = _Net(self._n_tokens(), self.embedding, self.hidden, self.layers)
            optimiser = torch.optim.Adam(self.net_.parameters(), lr=self.lr)
            loss_fn = torch.nn.CrossEntropyLoss(reduction="none")
            generator = torch.Generator().manual_seed(self.seed)
            self.net_.train()
            for _ in progress(range(self.epochs), desc="DeepLog epochs", unit="epoch"):
                order = torch.randperm(len(y), generator=generator)
                for start in range(0, len(y), self.batch_size):
                    b = order[start:start + self.batch_size]
                    optimiser.zero_grad()
                    loss = (loss_fn(self.net_(x[b]), y[b]) * w[b]).sum() / w[b].sum()
                    loss.backward()
                    optimiser.step()
            self.net_.eval()
        self.set_threshold(float(self.top_k + 1), f"an event outside the top {self.top_k}")

    def _ranks(self, seqs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rank of each actual next token among the predictions (1 = best), per pair."""
        import torch

        self._check_fitted("net_")
        inputs, targets, owner = self._pairs(seqs)
        windows, inverse = np.unique(inputs, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        logits = []
        with thread_limit(self.threads), torch.no_grad():
            for start in range(0, len(windows), 4096):
                logits.append(self.net_(torch.from_numpy(windows[start:start + 4096])).numpy())
        logits = np.concatenate(logits)[inverse]
        own = logits[np.arange(len(targets)), targets]
        ranks = (logits > own[:, None]).sum(axis=1) + 1
        ranks[targets == len(self.vocab_)] = self._n_tokens()  # unseen events rank last
        return ranks, targets, owner

    def _score_encoded(self, seqs):
        ranks, _, owner = self._ranks(seqs)
        return np.maximum.reduceat(ranks, np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])).astype(np.float64)

    def _explain_encoded(self, seqs, max_events):
        ranks, _, owner = self._ranks(seqs)
        out = []
        for g, seq in enumerate(seqs):
            r = ranks[owner == g]
            missed = np.flatnonzero(r > self.top_k)
            positions = [int(p) for p in missed if p < len(seq)]
            reasons = [f"event {int(seq[p])} at position {p} ranked {int(r[p])}, outside the top {self.top_k}"
                       for p in positions[:max_events]]
            if len(missed) and missed[-1] == len(seq):
                reasons.append(f"the group ended where normal groups go on (end ranked {int(r[-1])})")
            out.append(Blame(list(dict.fromkeys(int(seq[p]) for p in positions)), positions, reasons))
        # A rank is not a sum over events: no per-event contributions.
        return None, out

    def _own_state(self):
        self._check_fitted("net_")
        return {f"deeplog.{k}": v.detach().cpu().numpy() for k, v in self.net_.state_dict().items()}, {}

    def _set_own_state(self, arrays, meta):
        import torch

        net = _Net(len(self.vocab_) + 3, self.embedding, self.hidden, self.layers)
        expected = {f"deeplog.{k}": tuple(v.shape) for k, v in net.state_dict().items()}
        expect_arrays(arrays, expected)
        extra = sorted(k for k in arrays if k.startswith("deeplog.") and k not in expected)
        if extra:
            raise ModelFileError(f"model state: unexpected DeepLog arrays {', '.join(extra)}")
        net.load_state_dict({k[len("deeplog."):]: torch.from_numpy(np.array(arrays[k], dtype=np.float32))
                             for k in expected})
        self.net_ = net.eval()


def _Net(n_tokens: int, embedding: int, hidden: int, layers: int):
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(n_tokens, embedding)
            self.lstm = torch.nn.LSTM(embedding, hidden, layers, batch_first=True)
            self.out = torch.nn.Linear(hidden, n_tokens)

        def forward(self, x):
            h, _ = self.lstm(self.embed(x))
            return self.out(h[:, -1])

    return Net()
