import numpy as np
import pandas as pd
import pytest

from airflow_mlops.ml.sample import RowSample


def _frames(rows, size):
    return [pd.DataFrame({"i": np.arange(s, min(s + size, rows))}) for s in range(0, rows, size)]


class TestRowSample:
    def test_keeps_every_row_until_more_than_its_size_arrive(self):
        sample = RowSample(100)
        for frame in _frames(90, 30):
            sample.add(frame)
        assert sample.frame["i"].tolist() == list(range(90))

    @pytest.mark.parametrize("piece", [pytest.param(7, id="small-frames"), pytest.param(5000, id="one-frame")])
    def test_holds_at_most_its_size_drawn_from_every_frame(self, piece):
        sample = RowSample(500, seed=3)
        for frame in _frames(5000, piece):
            sample.add(frame)
        rows = sample.frame["i"].to_numpy()
        assert len(rows) == 500 and len(set(rows)) == 500 and sample.rows == 5000
        assert rows.min() < 500 and rows.max() >= 4500  # early and late rows both make it

    def test_uniform_over_rows_whatever_the_frames(self):
        hits = np.zeros(1000)
        for seed in range(200):
            sample = RowSample(100, seed=seed)
            for frame in [pd.DataFrame({"i": np.arange(100)}), pd.DataFrame({"i": np.arange(100, 1000)})]:
                sample.add(frame)
            hits[sample.frame["i"].to_numpy()] += 1
        # each row's inclusion is Binomial(200, 0.1): mean 20; the first frame's rows are no likelier than the rest
        assert abs(hits[:100].mean() - 20) < 2 and abs(hits[100:].mean() - 20) < 1

    def test_the_same_seed_and_frames_give_the_same_sample(self):
        def draw():
            sample = RowSample(50, seed=1)
            for frame in _frames(800, 64):
                sample.add(frame)
            return sample.frame["i"].tolist()

        assert draw() == draw()
