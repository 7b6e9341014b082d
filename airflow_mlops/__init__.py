"""airflow-mlops: the ML lifecycle as ordinary Airflow DAGs."""

__version__ = "0.1.0"
