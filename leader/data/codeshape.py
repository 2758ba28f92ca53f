"""Code domains: ICD-9/ICD-10 shapes and NDC digits, normalised the way extracts break them.

Normalisation undoes only lossless changes: dots in ICD codes (`401.9` -> `4019`), lower case,
an NDC written with dashes (any 4-4-2 / 5-3-2 / 5-4-1 split is padded to 5-4-2, the standard
HIPAA conversion), an NDC that lost its leading zeros (`338004904` -> `00338004904`) or gained a
float suffix (`338004904.0`). Whatever still has no valid shape is reported as invalid so the
caller drops it for a declared reason instead of keying a vocabulary with garbage.
"""

from __future__ import annotations

import pandas as pd

ICD_SHAPES = {
    ("diag", "9"): r"\d{3,5}|V\d{2,4}|E\d{3,4}",
    ("proc", "9"): r"\d{2,4}",
    ("diag", "10"): r"[A-Z]\d[0-9A-Z]{1,5}",
    ("proc", "10"): r"[0-9A-HJ-NP-Z]{7}",
}
UNKNOWN_NDC = "0" * 11


def normalise_icd(codes: pd.Series, kind: str, versions: pd.Series | None = None) -> tuple[pd.Series, pd.Series]:
    """(normalised codes, valid mask). `versions` '9'/'10' per row (MIMIC-IV); None = all ICD-9."""
    c = codes.astype(str).str.strip().str.replace(".", "", regex=False).str.upper()
    v = pd.Series("9", index=codes.index) if versions is None else versions.astype(str)
    ok = pd.Series(False, index=codes.index)
    for (k, ver), rx in ICD_SHAPES.items():
        if k == kind:
            ok |= (v == ver) & c.str.fullmatch(rx)
    return c, ok


def normalise_ndc(ndc: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(11-digit NDC strings, valid mask); empty / missing -> UNKNOWN_NDC (valid, maps to nothing)."""
    s = ndc.where(ndc.notna(), "").astype(str).str.strip().str.replace(r"\.0+$", "", regex=True)
    out = pd.Series(UNKNOWN_NDC, index=ndc.index, dtype=object)
    digits = s.str.fullmatch(r"\d{1,11}")
    out[digits] = s[digits].str.zfill(11)
    dashed = pd.Series(False, index=ndc.index)
    cand = s.str.contains("-", regex=False)
    if cand.any():  # extract is slow: only on the few values with dashes
        parts = s[cand].str.extract(r"^(\d{1,5})-(\d{1,4})-(\d{1,2})$")
        p = parts[parts[0].notna()]
        dashed[p.index] = True
        out[p.index] = p[0].str.zfill(5) + p[1].str.zfill(4) + p[2].str.zfill(2)
    ok = digits | dashed | (s == "")
    return out, ok
