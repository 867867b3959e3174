"""Does the item the RIS declares for a study agree with what its images' headers say?

The declared item wins over the header when they agree or the header is silent (BodyPartExamined
is often empty); when the header says otherwise (an MR of the head declared as a contrast chest
CT) the study is held for that item until an administrator resolves it.
"""

from __future__ import annotations

from collections.abc import Sequence

from mutualrec.matching.catalog import CatalogItem
from mutualrec.matching.codes import SeriesFacts

# Modalities that name the same kind of imaging: a chest radiograph is DX or CR depending on
# the detector, a mammogram may be written as DX.
_MODALITY_FAMILIES = ({"DX", "CR", "DR", "RG", "RF", "MG"}, {"NM", "PT"})
# Series that are not images of the body part (reports, presentation states, key objects,
# screen captures): they say nothing for or against the declared item.
_NOT_IMAGES = frozenset({"SR", "PR", "KO", "OT", "DOC", "SEG", "REG", "RTSTRUCT", "AU", "ECG"})
# Normalized body parts one examination may be written as: a head study's series say HEAD or
# BRAIN; a urography scans ABDOMEN, PELVIS or KIDNEY.
_BODY_REGIONS = (
    {"HEAD", "BRAIN", "HEADNECK", "SKULL", "IAC", "ORBIT", "SINUS"},
    {"NECK", "HEADNECK", "CAROTID", "THYROID", "CSPINE"},
    {"CHEST", "HEART", "BREAST", "LUNG", "TSPINE", "CHESTABDOMEN"},
    {"ABDOMEN", "ABDOMENPELVIS", "PELVIS", "KIDNEY", "LIVER", "BILEDUCT", "PROSTATE", "LSPINE"},
)


def _same_modality(declared: str, header: str) -> bool:
    return declared == header or any(
        declared in family and header in family for family in _MODALITY_FAMILIES
    )


def _same_region(declared: str, header: str) -> bool:
    return declared == header or any(
        declared in region and header in region for region in _BODY_REGIONS
    )


def contradictions(declared: CatalogItem, series: Sequence[SeriesFacts]) -> list[str]:
    """What the headers say against the declared imaging item; empty when nothing does.

    Only what a header positively states counts: a series without body part, a report series,
    or a contrast study whose series name no agent (ContrastBolusAgent is often left empty)
    contradicts nothing; a contrast agent on a study declared without contrast does.
    """
    images = [
        one for one in series if one.modality.strip().upper() not in _NOT_IMAGES and one.modality
    ]
    if not images:
        return []
    matching = [one for one in images if _same_modality(declared.modality, one.modality.upper())]
    if not matching:
        modalities = ",".join(sorted({one.modality.upper() for one in images}))
        return [f"modality {modalities}, not {declared.modality}"]
    problems = []
    parts = {one.body_part.upper() for one in matching if one.body_part}
    if parts and not any(_same_region(declared.body_part, part) for part in parts):
        problems.append(f"body part {','.join(sorted(parts))}, not {declared.body_part}")
    if not declared.contrast and any(one.contrast for one in matching):
        problems.append("a contrast agent, the item is without contrast")
    return problems
