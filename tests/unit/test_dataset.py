import numpy as np
import pytest
from helpers import random_dataset

from leader.data.assemble import patient_split
from leader.data.dataset import EHRDataset
from leader.errors import DataError


def test_split_is_patient_level_and_seeded():
    ids = [f"p{i}" for i in range(200)]
    a, b = patient_split(ids, seed=3), patient_split(list(reversed(ids)), seed=3)
    assert a == b
    assert patient_split(ids, seed=4) != a
    counts = {s: sum(v == s for v in a.values()) for s in ("train", "val", "test")}
    assert counts == {"train": 160, "val": 20, "test": 20}


def test_samples_carry_group_and_no_patient_spans_splits(random_ds):
    s = random_ds.samples()
    assert len(s) == len(random_ds.visits)
    assert (s.groupby("patient_id").split.nunique() == 1).all()
    single = s[s.group == "single"]
    assert (single.n_history == 0).all()
    assert set(s.group) == {"single", "multi"}


def test_save_load_roundtrip(tmp_path, random_ds):
    random_ds.save(tmp_path / "ds")
    back = EHRDataset.load(tmp_path / "ds")
    assert back.fingerprint == random_ds.fingerprint
    np.testing.assert_array_equal(back.labels(), random_ds.labels())
    assert back.visits.diag.iloc[0] == random_ds.visits.diag.iloc[0]


def test_labels_follow_requested_order(random_ds):
    ids = random_ds.visits.visit_id.to_numpy()[[5, 0, 3]]
    y = random_ds.labels(ids)
    assert y.shape == (3, random_ds.n_meds)
    assert set(np.flatnonzero(y[1])) == set(random_ds.visits.med.iloc[0])


def test_load_of_non_dataset_names_the_folder(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path)):
        EHRDataset.load(tmp_path)


def test_fingerprint_changes_with_split_seed():
    assert random_dataset(seed=0).fingerprint != random_dataset(seed=1).fingerprint
