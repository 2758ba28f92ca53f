"""The NDC -> ATC level-3 mapping the readers need (GAMENet/SafeDrug's atc4_to_ndc.json): where to
find it and how to read it. A missing or broken mapping is an error naming the file."""

from __future__ import annotations

import json
from pathlib import Path

from leader.errors import DataError


def load_ndc_to_atc(mapping_dir: Path) -> dict[str, str]:
    """atc4_to_ndc.json (ATC level-3 class -> 11-digit NDCs), inverted."""
    path = mapping_dir / "atc4_to_ndc.json"
    if not path.exists():
        raise DataError(
            "NDC->ATC mapping not found (pass --mappings or put atc4_to_ndc.json beside the CSVs)", file=str(path)
        )
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e}", file=str(path)) from e
    out: dict[str, str] = {}
    for atc, ndcs in raw.items():
        for n in ndcs:
            out.setdefault(str(n).zfill(11), str(atc)[:4])
    return out


def resolve_mapping_dir(root: Path, mapping_dir: Path | None) -> Path:
    if mapping_dir is not None:
        return Path(mapping_dir)
    for cand in (root, root / "mappings", root.parent / "mappings"):
        if (cand / "atc4_to_ndc.json").exists():
            return cand
    from leader.paths import find_mappings_root

    m = find_mappings_root()
    if m is None:
        raise DataError(
            "no NDC->ATC mapping (atc4_to_ndc.json) next to the CSVs or in ../shared/data/mappings", file=str(root)
        )
    return m
