"""What a run prints: the project's own lines (stage start/end, teacher progress, the dashboard URL,
the report path and summary), not the libraries' logging. Ray, Tune, Ray Train, DeepSpeed,
transformers and Optuna are quieted at the source (log levels, their own environment switches),
on the driver and, through the environment, in every Ray worker it starts. `--verbose` (which sets
LEADER_VERBOSE=1) leaves every library as it is, for debugging. Errors and warnings that are ours
still surface: only library INFO chatter, progress bars and deprecation notices go."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import warnings
from collections.abc import Iterator

VERBOSE_ENV = "LEADER_VERBOSE"

# Read by the libraries themselves, in the driver and in every worker process.
QUIET_ENV = {
    "TRANSFORMERS_VERBOSITY": "error",  # "Token indices sequence length is longer than ..." and the like
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # transformers' "Loading weights" bars
    "PYTHONWARNINGS": "ignore::FutureWarning,ignore::DeprecationWarning",  # upstream deprecations
    "TUNE_WARN_THRESHOLD_S": "60",  # "operation took 6 s, may be a bottleneck" on a busy small machine
    "RAY_AIR_NEW_OUTPUT": "0",  # Tune's legacy reporter: silent at verbose=0 (the new one still boxes)
    "MLFLOW_LOGGING_LEVEL": "WARNING",  # "Creating initial MLflow database tables..." (tracking: mlflow)
    "KINETO_LOG_LEVEL": "6",  # torch.profiler's "USDT: profiler_start/stop" lines (efficiency stage)
}
# Library loggers raised to WARNING on the driver ("Wrote the latest version of all result files",
# "A new study created in memory", DeepSpeed's op-build lines).
QUIET_LOGGERS = ("ray", "ray.tune", "ray.train", "optuna", "deepspeed", "DeepSpeed", "transformers")
# Raised to ERROR: "Token authentication is enabled for this Ray cluster" (it is; the run's own
# dashboard line says where the token is).
ERROR_ONLY_LOGGERS = ("ray._private.authentication.authentication_token_setup",)


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV) == "1"


def set_verbose(on: bool) -> None:
    """Called by the CLI for --verbose; inherited by the Ray processes this driver starts."""
    if on:
        os.environ[VERBOSE_ENV] = "1"
    else:
        os.environ.pop(VERBOSE_ENV, None)


def quiet_env() -> dict[str, str]:
    """Environment for Ray workers (runtime_env): empty when verbose."""
    return {} if verbose() else dict(QUIET_ENV)


def quiet_libraries() -> None:
    """Quiet the driver before Ray starts (a local Ray's processes inherit this environment)."""
    if verbose():
        return
    for k, v in QUIET_ENV.items():
        os.environ.setdefault(k, v)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ERROR_ONLY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
    except ImportError:  # pragma: no cover
        pass


def ray_logging_config():
    """ray.init's LoggingConfig: library INFO lines ("Checkpoint successfully created ...") off in
    every worker; None when verbose (Ray's default)."""
    import ray

    return None if verbose() else ray.LoggingConfig(encoding="TEXT", log_level="WARNING")


def train_logging_config():
    """Ray Train's own console level (its `ray.train` loggers; its log files keep every level).
    CRITICAL when quiet: on a busy machine its controller logs transient resource-request and
    PlacementGroupCleaner-stop timeouts with full tracebacks, which are not failures; a real
    failure still fails the run, and the stage reports its error."""
    from ray.train import LoggingConfig

    return LoggingConfig(log_level="INFO" if verbose() else "CRITICAL")


def quiet_train_worker() -> None:
    """In a Ray Train worker: Ray names one logger by its file path ("Reporting training result
    ..." per checkpoint), outside the `ray.train` level that train_logging_config sets."""
    if verbose():
        return
    from ray.train.v2._internal.execution import context

    logging.getLogger(context.__file__).setLevel(logging.WARNING)


@contextlib.contextmanager
def captured_stdout() -> Iterator[None]:
    """Library print() chatter inside the block (DeepSpeed's "op built successfully") is held
    back, and written out after all if the block fails, so nothing that explains an error is lost."""
    if verbose():
        yield
        return
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            yield
    except BaseException:
        sys.stdout.write(buf.getvalue())
        raise


def _drop_exit_at_shutdown(default):
    def hook(u) -> None:
        # Ray's SIGTERM handler raises SystemExit; when the signal lands inside a garbage-collector
        # callback Python prints it as "Exception ignored in ..." with a traceback: a worker being
        # stopped on purpose (Tune ending an experiment), not an error.
        if isinstance(u.exc_value, SystemExit):
            return
        default(u)

    return hook


def _one_line_for_ray_threads(default):
    def hook(args) -> None:
        # Ray Train's placement-group cleaner polls the state API from a thread of its own; when a
        # poll times out (a busy GCS) the thread dies with a 30-line traceback. Only its cleanup-
        # after-a-crash duty is lost, not the run: one line says so.
        name = args.thread.name if args.thread else ""
        if name.startswith("PlacementGroupCleaner"):
            print(f"ray: a Ray Train monitor thread stopped ({args.exc_type.__name__}: {args.exc_value})", flush=True)
            return
        default(args)

    return hook


def worker_setup() -> None:
    """Ray's worker_process_setup_hook (runtime_env): runs first in every worker process."""
    if verbose():
        return
    import threading

    sys.unraisablehook = _drop_exit_at_shutdown(sys.unraisablehook)
    threading.excepthook = _one_line_for_ray_threads(threading.excepthook)
    # Ray Train's placement-group cleaner actor: "Monitor thread did not exit within 12 s" at the
    # end of every teacher run on a busy machine
    logging.getLogger("ray.train.v2._internal.execution.controller.placement_group_cleaner").setLevel(logging.ERROR)
