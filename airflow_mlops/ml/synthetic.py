"""Synthetic churn data with a known signal, for the example pipeline, tests and demos."""

from __future__ import annotations

import numpy as np
import pandas as pd

CONTRACTS = ("month-to-month", "one-year", "two-year")
PAYMENTS = ("card", "bank-transfer", "e-check", "mailed-check")
REGIONS = ("north", "south", "east", "west")


def make_churn(n_rows: int = 2000, *, seed: int = 0, drift: float = 0.0) -> pd.DataFrame:
    """Customer rows with a churn label that depends on contract, tenure, charges and support calls.

    :param n_rows: number of rows.
    :param seed: random seed; the same seed gives the same frame.
    :param drift: 0 for the reference distribution; larger values shift charges, usage and contract mix,
        and make region and usage drive churn.
    """
    rng = np.random.default_rng(seed)
    contract = rng.choice(CONTRACTS, size=n_rows, p=_shift([0.55, 0.25, 0.20], drift))
    tenure = rng.gamma(shape=2.0, scale=12.0 * (1 + drift), size=n_rows).round(0)
    monthly = rng.normal(65 + 25 * drift, 20, size=n_rows).clip(15, 150).round(2)
    calls = rng.poisson(1.5 + drift, size=n_rows)
    usage = rng.lognormal(mean=2.0 + 0.5 * drift, sigma=0.6, size=n_rows).round(3)
    payment = rng.choice(PAYMENTS, size=n_rows)
    region = rng.choice(REGIONS, size=n_rows)
    logit = (
        -1.0
        + 1.4 * (contract == "month-to-month")
        - 0.8 * (contract == "two-year")
        - 0.045 * tenure
        + 0.02 * (monthly - 65)
        + 0.45 * calls
        + 0.5 * (payment == "e-check")
        # The shifted population also churns for new reasons (a competitor's offer in the south, heavy
        # users leaving), so a model trained before the shift loses quality on it.
        + drift * (3.0 * (region == "south") + 0.1 * (usage - 7.4) - 1.5)
    )
    churned = (rng.random(n_rows) < 1 / (1 + np.exp(-logit))).astype("int64")
    frame = pd.DataFrame(
        {
            "customer_id": [f"c{seed:04d}-{i:06d}" for i in range(n_rows)],
            "tenure_months": tenure,
            "monthly_charges": monthly,
            "support_calls": calls.astype("int64"),
            "data_usage_gb": usage,
            "contract": contract,
            "payment_method": payment,
            "region": region,
            "churned": churned,
        }
    )
    # A little missingness, as real exports have.
    frame.loc[rng.random(n_rows) < 0.02, "data_usage_gb"] = np.nan
    return frame


FEATURES = ("tenure_months", "monthly_charges", "support_calls", "data_usage_gb", "contract", "payment_method", "region")


def as_requests(frame: pd.DataFrame) -> list[dict]:
    """Churn rows as a client sends them to ``/predict``: the features, NaN as null, the customer id as ``id``."""
    return [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items() if k in FEATURES}
        | {"id": r["customer_id"]}
        for r in frame.to_dict("records")
    ]


def _shift(p: list[float], drift: float) -> list[float]:
    shifted = np.array(p) + np.array([drift * 0.3, -drift * 0.15, -drift * 0.15])
    shifted = shifted.clip(0.02, None)
    return list(shifted / shifted.sum())
