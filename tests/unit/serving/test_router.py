"""The router's traffic split: production, a canary and the post-promotion holdback, by sticky id buckets."""

import pytest

from airflow_mlops.serving.models import Router
from airflow_mlops.serving.server import routing

PRODUCTION, CANARY, HOLDBACK = object(), object(), object()  # choose() only hands the model back
KEYS = [f"customer-{i}" for i in range(20_000)]


def shares(router: Router) -> dict[str, float]:
    chosen = [router.choose(key, 0.0) for key in KEYS]
    names = {id(PRODUCTION): "production", id(CANARY): "canary", id(HOLDBACK): "holdback"}
    counts = dict.fromkeys(names.values(), 0)
    for model in chosen:
        counts[names[id(model)]] += 1
    return {name: n / len(KEYS) for name, n in counts.items()}


class TestRouter:
    def test_a_holdback_takes_its_share_of_the_ids(self):
        split = shares(Router(PRODUCTION, holdback=HOLDBACK, holdback_percent=5))
        assert split["holdback"] == pytest.approx(0.05, abs=0.006) and split["canary"] == 0

    def test_held_back_ids_are_ones_production_answered_during_the_canary(self):
        canary = Router(PRODUCTION, CANARY, 10)
        watch = Router(CANARY, holdback=PRODUCTION, holdback_percent=5)  # the canary promoted, production held back
        held = [key for key in KEYS if watch.choose(key, 0.0) is PRODUCTION]
        assert held and all(canary.choose(key, 0.0) is PRODUCTION for key in held), "they never change model"
        assert all(watch.choose(key, 0.0) is PRODUCTION for key in held), "sticky"

    def test_without_an_id_the_draw_decides(self):
        router = Router(PRODUCTION, holdback=HOLDBACK, holdback_percent=5)
        assert router.choose(None, 0.96) is HOLDBACK and router.choose(None, 0.94) is PRODUCTION

    @pytest.mark.parametrize(
        "router",
        [
            pytest.param(Router(PRODUCTION, holdback=None, holdback_percent=5), id="no-model-loaded"),
            pytest.param(Router(PRODUCTION, holdback=HOLDBACK, holdback_percent=0), id="zero-percent"),
        ],
    )
    def test_no_holdback(self, router):
        assert shares(router)["production"] == 1.0

    def test_health_names_every_side(self):
        class Model:
            def __init__(self, version):
                self.version = version

        router = Router(Model("v2"), holdback=Model("v1"), holdback_percent=5.0)
        assert router.versions == {
            "production": "v2",
            "canary": None,
            "canary_percent": 0.0,
            "holdback": "v1",
            "holdback_percent": 5.0,
        }


class TestRouting:
    def test_the_registry_aliases_the_server_follows(self):
        aliases = {
            "production": {"version": "v2"},
            "holdback": {"version": "v1", "weight": 5, "beside": "v2", "since": 1.0},
        }
        assert routing(aliases) == ("v2", None, 0.0, "v1", 5.0)

    def test_a_stale_holdback_takes_no_traffic(self):
        """Production moved (an operator's rollback) before the watch ended its holdback."""
        aliases = {"production": {"version": "v1"}, "holdback": {"version": "v1", "weight": 5, "beside": "v2"}}
        assert routing(aliases) == ("v1", None, 0.0, None, 0.0)

    def test_a_canary(self):
        assert routing({"production": {"version": "v1"}, "canary": {"version": "v2", "weight": 10}}) == (
            "v1",
            "v2",
            10.0,
            None,
            0.0,
        )
