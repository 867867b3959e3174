"""Normalizing the body part and contrast a DICOM header declares.

BodyPartExamined (0018,0015) is unreliable in the field ("PORT CHEST", "Chest", empty, Chinese
text): matching compares normalized PS3.16 Annex L terms, never the raw value.
"""

from __future__ import annotations

import re

# Synonyms seen from modalities and RIS systems, mapped to PS3.16 Annex L (CID 4031) terms.
_SYNONYMS: dict[str, str] = {
    "CHEST": "CHEST",
    "THORAX": "CHEST",
    "LUNG": "CHEST",
    "LUNGS": "CHEST",
    "胸部": "CHEST",
    "胸": "CHEST",
    "肺": "CHEST",
    "HEAD": "HEAD",
    "SKULL": "HEAD",
    "头颅": "HEAD",
    "头部": "HEAD",
    "颅脑": "HEAD",
    "BRAIN": "BRAIN",
    "脑": "BRAIN",
    "ABDOMEN": "ABDOMEN",
    "ABD": "ABDOMEN",
    "腹部": "ABDOMEN",
    "上腹部": "ABDOMEN",
    "PELVIS": "PELVIS",
    "盆腔": "PELVIS",
    "ABDOMENPELVIS": "ABDOMENPELVIS",
    "ABDOMEN PELVIS": "ABDOMENPELVIS",
    "ABDOMEN AND PELVIS": "ABDOMENPELVIS",
    "腹盆腔": "ABDOMENPELVIS",
    "HEADNECK": "HEADNECK",
    "HEAD NECK": "HEADNECK",
    "HEAD AND NECK": "HEADNECK",
    "头颈部": "HEADNECK",
    "BILEDUCT": "BILEDUCT",
    "BILE DUCT": "BILEDUCT",
    "胆道": "BILEDUCT",
    "胆管": "BILEDUCT",
    "CAROTID": "CAROTID",
    "颈动脉": "CAROTID",
    "PROSTATE": "PROSTATE",
    "前列腺": "PROSTATE",
    "CSPINE": "CSPINE",
    "C-SPINE": "CSPINE",
    "CERVICAL SPINE": "CSPINE",
    "颈椎": "CSPINE",
    "TSPINE": "TSPINE",
    "T-SPINE": "TSPINE",
    "THORACIC SPINE": "TSPINE",
    "胸椎": "TSPINE",
    "LSPINE": "LSPINE",
    "L-SPINE": "LSPINE",
    "LUMBAR SPINE": "LSPINE",
    "腰椎": "LSPINE",
    "KNEE": "KNEE",
    "膝关节": "KNEE",
    "膝": "KNEE",
    "SHOULDER": "SHOULDER",
    "肩关节": "SHOULDER",
    "HIP": "HIP",
    "髋关节": "HIP",
    "BREAST": "BREAST",
    "乳腺": "BREAST",
    "THYROID": "THYROID",
    "甲状腺": "THYROID",
    "HEART": "HEART",
    "CARDIAC": "HEART",
    "心脏": "HEART",
    "LIVER": "LIVER",
    "肝脏": "LIVER",
    "KIDNEY": "KIDNEY",
    "肾脏": "KIDNEY",
    "NECK": "NECK",
    "颈部": "NECK",
    "EXTREMITY": "EXTREMITY",
    "ANKLE": "ANKLE",
    "WRIST": "WRIST",
    "HAND": "HAND",
    "FOOT": "FOOT",
    "ELBOW": "ELBOW",
    "SINUS": "SINUS",
    "WHOLEBODY": "WHOLEBODY",
    "WHOLE BODY": "WHOLEBODY",
}
# Words that qualify a body part without changing it ("PORT CHEST" is a portable chest film).
_NOISE_WORDS = {"PORT", "PORTABLE", "AP", "PA", "LAT", "LATERAL", "UPRIGHT", "SUPINE", "ROUTINE"}
_NO_CONTRAST = {"", "NONE", "NO", "N", "NIL", "无", "平扫"}


def normalize_body_part(raw: str) -> str:
    """The Annex L term for a header's body part, or ``""`` when it names none we know."""
    text = raw.strip().upper().replace("_", " ")
    if not text:
        return ""
    if text in _SYNONYMS:
        return _SYNONYMS[text]
    words = [w for w in re.split(r"[\s/,;^]+", text) if w and w not in _NOISE_WORDS]
    joined = " ".join(words)
    if joined in _SYNONYMS:
        return _SYNONYMS[joined]
    for word in words:
        if word in _SYNONYMS:
            return _SYNONYMS[word]
    return ""


def has_contrast(contrast_bolus_agent: str) -> bool:
    """Whether (0018,0010) ContrastBolusAgent says a contrast agent was given."""
    return contrast_bolus_agent.strip().upper() not in _NO_CONTRAST
