from leader.data.prompts import CURRENT, build_prompt, build_prompts


def _sid(ds, patient_visits: int, index: int) -> int:
    p = ds.patients[ds.patients.n_visits == patient_visits].patient_id.iloc[0]
    v = ds.visits[(ds.visits.patient_id == p) & (ds.visits.visit_index == index)]
    return int(v.visit_id.iloc[0])


def _names(vocab, idx):
    return ", ".join(vocab.names[i] for i in idx)


def test_single_visit_prompt_matches_template_exactly(random_ds):
    ds = random_ds
    sid = _sid(ds, 1, 0)
    cur = ds.visits[ds.visits.visit_id == sid].iloc[0]
    want = (
        "The patient has 1 times ICU visits.\n"
        f"In this visit, the patient has diagnosis: {_names(ds.vocabs['diag'], cur.diag)}; "
        f"procedures: {_names(ds.vocabs['proc'], cur.proc)}. Then, the patient should be prescribed:"
    )
    assert build_prompt(ds, sid) == want


def test_multi_visit_prompt_matches_template_and_has_no_leakage(random_ds):
    ds = random_ds
    sid = _sid(ds, 3, 2)
    pid = ds.visits[ds.visits.visit_id == sid].patient_id.iloc[0]
    rows = ds.visits[ds.visits.patient_id == pid].sort_values("visit_index")
    v0, v1, v2 = (rows.iloc[i] for i in range(3))
    dv, pv, mv = ds.vocabs["diag"], ds.vocabs["proc"], ds.vocabs["med"]
    want = "\n".join(
        [
            "The patient has 3 times ICU visits.",
            f"In the 1-th visit, the patient had diagnosis: {_names(dv, v0.diag)}; procedures: {_names(pv, v0.proc)}. The patient was prescribed drugs: {_names(mv, v0.med)}.",  # noqa: E501
            f"In the 2-th visit, the patient had diagnosis: {_names(dv, v1.diag)}; procedures: {_names(pv, v1.proc)}. The patient was prescribed drugs: {_names(mv, v1.med)}.",  # noqa: E501
            f"In this visit, the patient has diagnosis: {_names(dv, v2.diag)}; procedures: {_names(pv, v2.proc)}. Then, the patient should be prescribed:",  # noqa: E501
        ]
    )
    got = build_prompt(ds, sid)
    assert got == want
    # the current visit's medications (the label) never appear in its own prompt line
    assert "prescribed drugs" not in got.splitlines()[-1]


def test_budget_drops_oldest_visit_first_never_current(random_ds):
    ds = random_ds
    sid = _sid(ds, 4, 3)
    full = build_prompt(ds, sid)
    assert full.count("-th visit") == 3
    capped = build_prompt(ds, sid, max_past_visits=1)
    assert "In the 3-th visit" in capped and "In the 1-th visit" not in capped
    tiny = build_prompt(ds, sid, token_budget=1)
    assert tiny.count("-th visit") == 0 and tiny.endswith(CURRENT.split("{proc}")[1])
    mid_budget = len(full.split()) - 1
    trimmed = build_prompt(ds, sid, token_budget=mid_budget)
    assert "In the 1-th visit" not in trimmed and "In the 3-th visit" in trimmed


def test_build_prompts_batch_equals_single(random_ds):
    ds = random_ds
    ids = ds.samples("train").sample_id.to_numpy()[:15][::-1]
    assert build_prompts(ds, ids) == [build_prompt(ds, int(i)) for i in ids]
