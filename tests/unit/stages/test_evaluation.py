from airflow_mlops.stages.evaluation import register
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.registry import ModelRegistry


def evaluation(version: str, blessed: bool = True) -> dict:
    return {"model_version": version, "blessed": blessed, "metrics": {"roc_auc": 0.8}, "reason": "test"}


class TestRegister:
    def test_promotes_blessed_and_never_rolls_back_to_an_older_model(self, tmp_path):
        store = ArtifactStore.from_uri(str(tmp_path))
        assert register(store, "p", evaluation("v1"), lineage={}, promote=True)["production"] == "v1"
        assert register(store, "p", evaluation("v2"), lineage={}, promote=True)["production"] == "v2"
        again = register(store, "p", evaluation("v1"), lineage={}, promote=True)
        assert again == {"model_version": "v1", "status": "blessed", "production": "v2", "revision": 4}
        assert ModelRegistry(store, "p").load()["revision"] == 4, "re-registering writes nothing"

    def test_rejected_never_promoted_and_card_written(self, tmp_path):
        store = ArtifactStore.from_uri(str(tmp_path))
        result = register(store, "p", evaluation("v1", blessed=False), lineage={"dataset_id": "d"}, promote=True)
        assert result["status"] == "rejected" and result["production"] is None
        assert "REJECTED" in store.read_text("models/p/v1/card.html")
        assert store.read_json("models/p/v1/lineage.json")["dataset_id"] == "d"

    def test_without_promote_production_is_untouched(self, tmp_path):
        store = ArtifactStore.from_uri(str(tmp_path))
        assert register(store, "p", evaluation("v1"), lineage={}, promote=False)["production"] is None
