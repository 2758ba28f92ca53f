"""The `data/<dataset>` unit: prepare (or load from the data cache) the dataset every later unit of
it reads, and its cohort statistics for the report. Always loaded, even when reused: the later
units need the dataset in memory."""

from __future__ import annotations

import time
from pathlib import Path

from leader.errors import ConfigError
from leader.study.context import SKIPPED, Study
from leader.study.spec import expand_env
from leader.study.units import Unit


def _root(study: Study, d):
    """The dataset's folder; SKIPPED when an optional dataset is not on this machine."""
    from leader.paths import find_demo_root

    root = expand_env(d.root) if d.root else None
    if d.source == "demo" and root is None:
        demo = find_demo_root()
        if demo is None:
            if d.optional:
                study.echo(f"  dataset {d.name!r}: MIMIC-III demo not found on this machine; skipped (optional)")
                return SKIPPED
            raise ConfigError(f"dataset {d.name!r}: the MIMIC-III demo was not found (set root: or LEADER_DEMO_ROOT)")
        root = str(demo)
    if root is not None and not Path(root).is_dir():
        if d.optional:
            study.echo(f"  dataset {d.name!r}: {root} not found; skipped (optional)")
            return SKIPPED
        raise ConfigError(f"dataset {d.name!r}: field 'root': no such folder {root}")
    return root


def run(study: Study, u: Unit):
    from leader.data.cache import PrepareOptions, prepare
    from leader.data.stats import dataset_stats

    d = next(x for x in study.spec.datasets if x.name == u.dataset)
    root = _root(study, d)
    if root is SKIPPED:
        return SKIPPED
    st, reason = study.state.reusable(u)
    t0 = time.time()
    ds = prepare(d.source, root, PrepareOptions(**d.prepare.model_dump()))  # the data cache: fast once prepared
    ds.name = d.name
    # cohort-level aggregates only (Table VI); nested details stay out of the report
    study.dataset_stats[d.name] = {
        k: v
        for k, v in dataset_stats(ds).items()
        if not isinstance(v, (dict, list)) and k not in ("name", "fingerprint")
    }
    if st is not None:
        study.echo(f"[reuse] {u.name}")
    else:
        study.state.begin(u, reason)
        out = {"fingerprint_ds": ds.fingerprint, "n_samples": int(len(ds.visits)), "n_meds": int(ds.n_meds)}
        study.state.finish(u, out, t0)
    return ds
