"""A bounded, seeded, uniform sample of rows that arrive frame by frame (a bottom-k sketch)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


class RowSample:
    """At most ``size`` rows drawn uniformly without replacement from every frame added, in bounded memory.

    Each row added draws a key uniform in [0, 1) from a generator seeded with ``seed``; the sample is the ``size``
    rows with the smallest keys (the bottom-k sketch: every subset of ``size`` rows is equally likely, whatever the
    frames' sizes). A frame's rows whose keys are not below the largest key held are dropped at once, so memory is
    the sample plus one frame. Until more than ``size`` rows arrive, the sample is every row. The same frames in the
    same order give the same sample.

    :param size: the most rows kept.
    :param seed: the seed of the keys' generator.
    """

    def __init__(self, size: int, seed: int = 0) -> None:
        import numpy as np

        self.size = size
        self.rows = 0
        self._rng = np.random.default_rng(seed)
        self._frames: list[pd.DataFrame] = []
        self._keys: list[np.ndarray] = []

    def add(self, frame: pd.DataFrame) -> None:
        """Offer every row of ``frame`` to the sample."""
        import numpy as np
        import pandas as pd

        keys = self._rng.random(len(frame))
        self.rows += len(frame)
        held = sum(len(k) for k in self._keys)
        if held >= self.size:
            keep = keys < max(k.max() for k in self._keys)
            frame, keys = frame[keep], keys[keep]
        if not len(frame):
            return
        self._frames.append(frame.reset_index(drop=True))
        self._keys.append(keys)
        if held + len(keys) > self.size:
            merged = pd.concat(self._frames, ignore_index=True)
            all_keys = np.concatenate(self._keys)
            kept = np.sort(np.argpartition(all_keys, self.size - 1)[: self.size])
            self._frames, self._keys = [merged.iloc[kept].reset_index(drop=True)], [all_keys[kept]]

    @property
    def frame(self) -> pd.DataFrame:
        """The sampled rows, in the order they arrived (empty, without columns, before any row)."""
        import pandas as pd

        return pd.concat(self._frames, ignore_index=True) if self._frames else pd.DataFrame()

    @property
    def keys(self) -> np.ndarray:
        import numpy as np

        return np.concatenate(self._keys) if self._keys else np.empty(0)
