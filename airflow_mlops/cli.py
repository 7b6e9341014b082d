"""``airflow-mlops``: config lint, example data, registry status, schema acceptance, training, model server.
Runs without an Airflow deployment."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_mlops.config.pipeline import PipelineConfig
    from airflow_mlops.store.artifacts import ArtifactStore


def _config_files(paths: Sequence[str]) -> tuple[list[Path], list[str]]:
    """The YAML files named or found (not recursively) in the named directories, and an error per empty directory."""
    from airflow_mlops.factories.folder import config_files

    found: list[Path] = []
    errors: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            inside = config_files(path)
            if not inside:
                errors.append(f"{path}: no *.yaml or *.yml files in this directory.")
            found += inside
        else:
            found.append(path)
    return list(dict.fromkeys(found)), errors


def cmd_lint(args: argparse.Namespace) -> int:
    """Validate pipeline configs without Airflow; print every error with file and key path."""
    from airflow_mlops.factories.folder import duplicate_pipeline
    from airflow_mlops.factories.loader import check_pipeline_config

    paths, failed = _config_files(args.paths)
    for line in failed:
        print(line, file=sys.stderr)
    owners: dict[str, Path] = {}
    for path in paths:
        config, errors = check_pipeline_config(path)
        if config is not None and (duplicate := duplicate_pipeline(path, config, owners)):
            errors = [duplicate]
        for line in errors:
            print(line, file=sys.stderr)
        if not errors:
            print(f"OK {path}")
        failed += errors
    return 1 if failed else 0


def cmd_example_data(args: argparse.Namespace) -> int:
    """Write synthetic churn CSVs, one per date (deterministic per date)."""
    from airflow_mlops.ml.synthetic import make_churn

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for ds in args.dates:
        path, partial = out / f"{ds}.csv", out / f".{ds}.csv.partial"
        make_churn(args.rows, seed=int(ds.replace("-", "")), drift=args.drift).to_csv(partial, index=False)
        partial.replace(path)  # a reader never sees half a file
        print(f"wrote {path} ({args.rows} rows)")
    return 0


def _config_store(config: PipelineConfig, artifact_root: str | None) -> ArtifactStore:
    """The pipeline's artifact store: ``artifact_root`` when given, else the config's root or its connection (read
    from Airflow's connections, e.g. an ``AIRFLOW_CONN_<ID>`` variable), S3 through the config's AWS connection."""
    from airflow_mlops.store.artifacts import ArtifactStore

    if artifact_root or not config.artifacts.conn_id:
        return ArtifactStore.from_uri(artifact_root or config.artifacts.root)
    from airflow_mlops.hooks.artifact_store import ArtifactStoreHook

    return ArtifactStoreHook(aws_conn_id=config.artifacts.aws_conn_id, mlops_conn_id=config.artifacts.conn_id).get_store()


def cmd_registry(args: argparse.Namespace) -> int:
    """Print a pipeline's model registry as a table."""
    from airflow_mlops.factories.loader import load_pipeline_config
    from airflow_mlops.store.layout import registry_key
    from airflow_mlops.store.registry import ModelRegistry

    config = load_pipeline_config(args.config)
    doc = ModelRegistry(_config_store(config, args.artifact_root), config.pipeline).load()
    production = (doc["aliases"].get("production") or {}).get("version")
    metric = config.evaluation.metric if config.evaluation else None
    print(
        f"{registry_key(config.pipeline)}  revision {doc['revision']}  production {production}  last blessed {doc['last_blessed']}"
    )
    print(f"{'version':<14}{'status':<10}{metric or 'metric':<10}{'dataset':<14}{'alias':<12}reason")
    for version, entry in sorted(doc["versions"].items(), key=lambda kv: kv[1]["registered_at"]):
        value = entry["metrics"].get(metric) if metric else None
        alias = ",".join(a for a, v in doc["aliases"].items() if (v or {}).get("version") == version)
        dataset = str(entry["lineage"].get("dataset_id", ""))[:12]
        print(
            f"{version:<14}{entry['status']:<10}{'' if value is None else f'{value:.4f}':<10}{dataset:<14}{alias:<12}{entry['reason']}"
        )
    return 0


def cmd_schema_accept(args: argparse.Namespace) -> int:
    """Accept the dataset a failed validation reported on as the pipeline's next schema version."""
    import getpass

    from airflow_mlops.exceptions import MlopsError
    from airflow_mlops.factories.loader import load_pipeline_config
    from airflow_mlops.stages.data import Columns, accept_schema

    config = load_pipeline_config(args.config)
    columns = Columns(config.label, config.task, list(config.features.numeric), list(config.features.categorical))
    store = _config_store(config, args.artifact_root)
    try:
        result = accept_schema(
            store, config.pipeline, columns, report_uri=args.report, by=args.by or getpass.getuser(), why=args.why
        )
    except MlopsError as err:
        print(f"{args.config}: {err}", file=sys.stderr)
        return 1
    print(f"schema version {result['number']} of {config.pipeline} accepted by {result['by']}: {result['schema_uri']}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train LightGBM on stored features: the stage the training task runs, in-process or in a Kubernetes pod."""
    import json
    import logging

    from airflow_mlops.exceptions import MlopsError
    from airflow_mlops.stages.training import TrainSettings, train
    from airflow_mlops.store.artifacts import ArtifactStore

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        params = json.loads(args.params)
        if not isinstance(params, dict):
            raise ValueError("not an object")
    except ValueError as err:
        print(f"--params: expected a JSON object of LightGBM parameters ({err}). Got {args.params!r} instead.", file=sys.stderr)
        return 2
    settings = TrainSettings(
        params, args.num_boost_round, args.seed, args.early_stopping_rounds, args.device, args.allow_cpu_fallback
    )
    try:
        result = train(ArtifactStore.from_uri(args.artifact_root), args.pipeline, args.features_id, settings)
    except MlopsError as err:
        print(f"airflow-mlops train: {err}", file=sys.stderr)
        return 1
    print(json.dumps(result, sort_keys=True))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the pipeline's production (and canary) model over HTTP, in one worker process per core by default."""
    import json
    import logging
    import shutil
    import tempfile
    import uuid

    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s [%(process)d]: %(message)s")
    if args.workers < 1:
        print(f"--workers: expected at least 1. Got {args.workers} instead.", file=sys.stderr)
        return 2
    # prometheus_client picks multiprocess mode when it is first imported: the folder is set before the app is.
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if metrics_dir:  # one of the operator's: emptied, each server run counts from zero
        Path(metrics_dir).mkdir(parents=True, exist_ok=True)
        for stale in Path(metrics_dir).glob("*.db"):
            stale.unlink()
    else:
        _remove_orphaned_metrics(Path(tempfile.gettempdir()))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix=f"airflow-mlops-metrics-{os.getpid()}-")
    from airflow_mlops.serving.app import SETTINGS_ENV
    from airflow_mlops.serving.auth import GUARDED, read_tokens

    token_files = {route: getattr(args, f"{route}_token_file") for route in GUARDED}
    for route, token_file in token_files.items():
        if token_file and not read_tokens(route, token_file):  # read here once, so a bad file stops the start
            print(f"--{route}-token-file: {token_file} holds no token.", file=sys.stderr)
            return 2
    settings = {
        "artifact_root": args.artifact_root,
        "pipeline": args.pipeline,
        "version": args.version,
        "poll_seconds": args.poll_seconds,
        "flush_seconds": args.flush_seconds,
        "wal_dir": args.wal_dir,
        "token_files": token_files,
        "workers": args.workers,
        "run": uuid.uuid4().hex,
    }
    os.environ[SETTINGS_ENV] = json.dumps(settings)
    try:
        uvicorn.run(
            "airflow_mlops.serving.app:app_from_env",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level="warning",
        )
    finally:
        if not metrics_dir:
            shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
    return 0


def _remove_orphaned_metrics(tmp: Path) -> None:
    """Remove the metrics folders of servers that were killed (their process is gone) before they could."""
    import shutil

    for folder in tmp.glob("airflow-mlops-metrics-*-*"):
        pid = folder.name.removeprefix("airflow-mlops-metrics-").split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(folder, ignore_errors=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="airflow-mlops", description="ML lifecycle pipelines on Apache Airflow.")
    sub = parser.add_subparsers(dest="command", required=True)
    lint = sub.add_parser("lint", help=cmd_lint.__doc__)
    lint.add_argument("paths", nargs="+", help="YAML files or directories of them")
    lint.set_defaults(func=cmd_lint)
    data = sub.add_parser("example-data", help=cmd_example_data.__doc__)
    data.add_argument("--out", required=True, help="directory for <date>.csv files")
    data.add_argument("--dates", nargs="+", required=True, help="dates (YYYY-MM-DD), one file each")
    data.add_argument("--rows", type=int, default=3000)
    data.add_argument("--drift", type=float, default=0.0, help="0 for the reference distribution")
    data.set_defaults(func=cmd_example_data)
    reg = sub.add_parser("registry", help=cmd_registry.__doc__)
    reg.add_argument("config", help="pipeline YAML")
    reg.add_argument("--artifact-root", help="override the config's artifact root")
    reg.set_defaults(func=cmd_registry)
    schema = sub.add_parser("schema", help="the pipeline's accepted data schema").add_subparsers(dest="action", required=True)
    accept = schema.add_parser("accept", help=cmd_schema_accept.__doc__)
    accept.add_argument("config", help="pipeline YAML")
    accept.add_argument("--report", required=True, help="URI of the validation report (validation.html) to accept")
    accept.add_argument("--why", required=True, help="why the change is right (recorded with the version)")
    accept.add_argument("--by", help="who accepts it (default: the current user)")
    accept.add_argument("--artifact-root", help="override the config's artifact root")
    accept.set_defaults(func=cmd_schema_accept)
    from airflow_mlops.config.base import field_default
    from airflow_mlops.config.training import ModelConfig

    fit = sub.add_parser("train", help=cmd_train.__doc__)
    fit.add_argument("--artifact-root", required=True, help="file:// path, local path or s3://bucket/prefix")
    fit.add_argument("--pipeline", required=True)
    fit.add_argument("--features-id", required=True, help="the preprocessing step's features_id")
    fit.add_argument("--params", default="{}", help="LightGBM parameters as a JSON object (the config's model.params)")
    fit.add_argument("--num-boost-round", type=int, default=field_default(ModelConfig, "num_boost_round"))
    fit.add_argument("--seed", type=int, default=field_default(ModelConfig, "seed"))
    fit.add_argument("--early-stopping-rounds", type=int)
    fit.add_argument("--device", choices=("cpu", "cuda", "gpu"), default="cpu", help="LightGBM's device_type")
    fit.add_argument("--allow-cpu-fallback", action="store_true", help="train on the CPU when the device is not there")
    fit.set_defaults(func=cmd_train)
    serve = sub.add_parser("serve", help=cmd_serve.__doc__)
    serve.add_argument("--artifact-root", required=True, help="file:// path, local path or s3://bucket/prefix")
    serve.add_argument("--pipeline", required=True)
    serve.add_argument(
        "--version",
        help="serve this model version alone, as production: no canary, the registry's aliases are not watched "
        "(one KServe revision per version)",
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes on the one socket (default: the number of cores)",
    )
    serve.add_argument("--poll-seconds", type=float, default=2.0, help="how often the registry is checked for new models")
    serve.add_argument("--flush-seconds", type=float, default=2.0, help="how often logged predictions are written")
    serve.add_argument(
        "--wal-dir",
        help="write-ahead folder of the logs, on a disk that outlives the process "
        "(default: $MLOPS_WAL_DIR, else <tmp>/airflow-mlops-wal, then <artifact root id>-<pipeline>)",
    )
    for route in ("predict", "feedback", "metrics"):
        serve.add_argument(
            f"--{route}-token-file",
            help=f"bearer tokens for /{route}, one per line (default: the comma-separated MLOPS_{route.upper()}_TOKENS; "
            "none: the route is open)",
        )
    serve.set_defaults(func=cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
