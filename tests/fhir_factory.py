"""Deterministic synthetic lab results as FHIR R4 JSON, shaped like a Chongqing hospital's LIS feed.

Everything is derived from a seed: the same seed (and ``now``) gives the same resources and the
same bytes, and different seeds give different business identifiers, so successive bundles create
new Observations. Only the standard library and :mod:`mutualrec.identity` are used, so benchmarks
can generate data without test dependencies.

    bundle = make_bundle(7, observations=100, now=datetime.now(CHINA))
    body = bundle_bytes(7, observations=100, now=datetime.now(CHINA))
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import uuid
from dataclasses import dataclass
from typing import Any, NamedTuple

from mutualrec.identity import resident_id_check_digit

CHINA = dt.timezone(dt.timedelta(hours=8), "CST")
DEFAULT_INSTITUTION = "H500103001"
RESIDENT_ID_SYSTEM = "https://fhir.mutualrec.org/sid/resident-id-card"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
# LOINC 24323-8: Comprehensive metabolic 2000 panel - Serum or Plasma.
REPORT_CODE = "24323-8"
REPORT_SIZE = (10, 20)
# One patient per this many Observations unless the caller says otherwise: two reports each.
OBSERVATIONS_PER_PATIENT = 30
# Every UUID of the factory lives under this namespace, so ids never collide with real ones.
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:mutualrec:tests:fhir-factory")

# Chongqing's urban and suburban districts (GB/T 2260 codes 5001xx); digits 1-6 of a resident ID.
CHONGQING_DISTRICTS: tuple[tuple[str, str], ...] = (
    ("500101", "万州区"),
    ("500102", "涪陵区"),
    ("500103", "渝中区"),
    ("500104", "大渡口区"),
    ("500105", "江北区"),
    ("500106", "沙坪坝区"),
    ("500107", "九龙坡区"),
    ("500108", "南岸区"),
    ("500109", "北碚区"),
    ("500110", "綦江区"),
    ("500111", "大足区"),
    ("500112", "渝北区"),
    ("500113", "巴南区"),
    ("500114", "黔江区"),
    ("500115", "长寿区"),
    ("500116", "江津区"),
    ("500117", "合川区"),
    ("500118", "永川区"),
    ("500119", "南川区"),
    ("500120", "璧山区"),
    ("500151", "铜梁区"),
    ("500152", "潼南区"),
    ("500153", "荣昌区"),
    ("500154", "开州区"),
    ("500155", "梁平区"),
    ("500156", "武隆区"),
)
_FIRST_BIRTH = dt.date(1940, 1, 1)
_LAST_BIRTH = dt.date(2020, 12, 31)


class Analyte(NamedTuple):
    """A lab test as a Chinese LIS reports it, with the LOINC code it maps to.

    ``low``/``high`` are the adult reference interval (None: open on that side); ``mean``/``sd``
    shape the generated values, which are rounded to ``decimals``.
    """

    loinc: str
    display: str
    unit: str
    low: float | None
    high: float | None
    mean: float
    sd: float
    local_code: str
    text: str
    decimals: int


# LOINC SI (moles or mass per volume) codes with valid, case-sensitive UCUM units. Calcium and
# LDL use the [Moles/volume] codes 2000-8 and 69419-0: 17861-6 and 18262-6 are [Mass/volume]
# (mg/dL) codes and would contradict the mmol/L the hospitals report.
# fmt: off
ANALYTES: tuple[Analyte, ...] = (
    # Electrolytes and kidney
    Analyte("2823-3", "Potassium [Moles/volume] in Serum or Plasma",
            "mmol/L", 3.5, 5.3, 4.2, 0.4, "K", "钾", 2),
    Analyte("2951-2", "Sodium [Moles/volume] in Serum or Plasma",
            "mmol/L", 137, 147, 141, 2.5, "NA", "钠", 1),
    Analyte("2075-0", "Chloride [Moles/volume] in Serum or Plasma",
            "mmol/L", 99, 110, 104, 2.5, "CL", "氯", 1),
    Analyte("2000-8", "Calcium [Moles/volume] in Serum or Plasma",
            "mmol/L", 2.11, 2.52, 2.32, 0.12, "CA", "钙", 2),
    Analyte("14879-1", "Phosphate [Moles/volume] in Serum or Plasma",
            "mmol/L", 0.85, 1.51, 1.15, 0.16, "P", "无机磷", 2),
    Analyte("2601-3", "Magnesium [Moles/volume] in Serum or Plasma",
            "mmol/L", 0.75, 1.02, 0.88, 0.07, "MG", "镁", 2),
    Analyte("2028-9", "Carbon dioxide, total [Moles/volume] in Serum or Plasma",
            "mmol/L", 22, 29, 25, 2, "CO2", "二氧化碳结合力", 1),
    Analyte("14682-9", "Creatinine [Moles/volume] in Serum or Plasma",
            "umol/L", 57, 111, 78, 18, "CREA", "肌酐", 0),
    Analyte("22664-7", "Urea [Moles/volume] in Serum or Plasma",
            "mmol/L", 3.1, 8.0, 5.3, 1.3, "UREA", "尿素", 2),
    Analyte("14933-6", "Urate [Moles/volume] in Serum or Plasma",
            "umol/L", 208, 428, 330, 75, "UA", "尿酸", 0),
    # Glucose
    Analyte("14749-6", "Glucose [Moles/volume] in Serum or Plasma",
            "mmol/L", 3.9, 6.1, 5.4, 0.9, "GLU", "葡萄糖", 2),
    Analyte("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood",
            "%", 4.0, 6.0, 5.7, 0.8, "HBA1C", "糖化血红蛋白", 1),
    # Liver
    Analyte("1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
            "U/L", 9, 50, 25, 11, "ALT", "丙氨酸氨基转移酶", 0),
    Analyte("1920-8",
            "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
            "U/L", 15, 40, 24, 7, "AST", "天门冬氨酸氨基转移酶", 0),
    Analyte("2324-2",
            "Gamma glutamyl transferase [Enzymatic activity/volume] in Serum or Plasma",
            "U/L", 10, 60, 30, 16, "GGT", "γ-谷氨酰转移酶", 0),
    Analyte("6768-6", "Alkaline phosphatase [Enzymatic activity/volume] in Serum or Plasma",
            "U/L", 45, 125, 78, 20, "ALP", "碱性磷酸酶", 0),
    Analyte("14631-6", "Bilirubin.total [Moles/volume] in Serum or Plasma",
            "umol/L", 0, 23, 12, 4.5, "TBIL", "总胆红素", 1),
    Analyte("14629-0", "Bilirubin.direct [Moles/volume] in Serum or Plasma",
            "umol/L", 0, 8, 3.6, 1.5, "DBIL", "直接胆红素", 1),
    Analyte("1751-7", "Albumin [Mass/volume] in Serum or Plasma",
            "g/L", 40, 55, 45, 3.5, "ALB", "白蛋白", 1),
    Analyte("2885-2", "Protein [Mass/volume] in Serum or Plasma",
            "g/L", 65, 85, 72, 5, "TP", "总蛋白", 1),
    Analyte("2532-0", "Lactate dehydrogenase [Enzymatic activity/volume] in Serum or Plasma",
            "U/L", 120, 250, 180, 35, "LDH", "乳酸脱氢酶", 0),
    Analyte("2157-6", "Creatine kinase [Enzymatic activity/volume] in Serum or Plasma",
            "U/L", 50, 310, 120, 50, "CK", "肌酸激酶", 0),
    # Lipids
    Analyte("14647-2", "Cholesterol [Moles/volume] in Serum or Plasma",
            "mmol/L", None, 5.2, 4.7, 0.9, "TC", "总胆固醇", 2),
    Analyte("14927-8", "Triglyceride [Moles/volume] in Serum or Plasma",
            "mmol/L", None, 1.7, 1.5, 0.7, "TG", "甘油三酯", 2),
    Analyte("14646-4", "Cholesterol in HDL [Moles/volume] in Serum or Plasma",
            "mmol/L", 1.04, None, 1.3, 0.3, "HDL-C", "高密度脂蛋白胆固醇", 2),
    Analyte("69419-0",
            "Cholesterol in LDL [Moles/volume] in Serum or Plasma by Direct assay",
            "mmol/L", None, 3.4, 2.8, 0.8, "LDL-C", "低密度脂蛋白胆固醇", 2),
    # Iron, inflammation, heart, thyroid
    Analyte("14798-3", "Iron [Moles/volume] in Serum or Plasma",
            "umol/L", 10.6, 36.7, 18, 5.5, "FE", "血清铁", 1),
    Analyte("2276-4", "Ferritin [Mass/volume] in Serum or Plasma",
            "ug/L", 30, 400, 140, 70, "FER", "铁蛋白", 1),
    Analyte("1988-5", "C reactive protein [Mass/volume] in Serum or Plasma",
            "mg/L", 0, 10, 4, 3.5, "CRP", "C反应蛋白", 2),
    Analyte("33762-6",
            "Natriuretic peptide.B prohormone N-Terminal [Mass/volume] in Serum or Plasma",
            "pg/mL", 0, 125, 70, 45, "NT-PROBNP", "N末端B型利钠肽前体", 0),
    Analyte("3016-3", "Thyrotropin [Units/volume] in Serum or Plasma",
            "m[IU]/L", 0.27, 4.2, 1.9, 0.9, "TSH", "促甲状腺激素", 3),
    Analyte("14920-3", "Thyroxine (T4) free [Moles/volume] in Serum or Plasma",
            "pmol/L", 12, 22, 16.5, 2.5, "FT4", "游离甲状腺素", 2),
    # Complete blood count
    Analyte("6690-2", "Leukocytes [#/volume] in Blood by Automated count",
            "10*9/L", 3.5, 9.5, 6.4, 1.7, "WBC", "白细胞计数", 2),
    Analyte("789-8", "Erythrocytes [#/volume] in Blood by Automated count",
            "10*12/L", 4.3, 5.8, 4.8, 0.45, "RBC", "红细胞计数", 2),
    Analyte("718-7", "Hemoglobin [Mass/volume] in Blood",
            "g/L", 130, 175, 142, 14, "HGB", "血红蛋白", 0),
    Analyte("4544-3", "Hematocrit [Volume Fraction] of Blood by Automated count",
            "%", 40, 50, 43, 4, "HCT", "红细胞压积", 1),
    Analyte("787-2", "MCV [Entitic volume] by Automated count",
            "fL", 82, 100, 90, 5, "MCV", "平均红细胞体积", 1),
    Analyte("785-6", "MCH [Entitic mass] by Automated count",
            "pg", 27, 34, 30, 2, "MCH", "平均红细胞血红蛋白含量", 1),
    Analyte("786-4", "MCHC [Mass/volume] by Automated count",
            "g/L", 316, 354, 334, 10, "MCHC", "平均红细胞血红蛋白浓度", 0),
    Analyte("777-3", "Platelets [#/volume] in Blood by Automated count",
            "10*9/L", 125, 350, 225, 55, "PLT", "血小板计数", 0),
    Analyte("770-8", "Neutrophils/100 leukocytes in Blood by Automated count",
            "%", 40, 75, 58, 8, "NEUT%", "中性粒细胞百分比", 1),
    Analyte("736-9", "Lymphocytes/100 leukocytes in Blood by Automated count",
            "%", 20, 50, 32, 7, "LYMPH%", "淋巴细胞百分比", 1),
    Analyte("30341-2", "Erythrocyte sedimentation rate",
            "mm/h", 0, 15, 9, 6, "ESR", "红细胞沉降率", 0),
    # Coagulation
    Analyte("5902-2", "Prothrombin time (PT)",
            "s", 9.4, 12.5, 11.2, 0.8, "PT", "凝血酶原时间", 1),
    Analyte("6301-6", "INR in Platelet poor plasma by Coagulation assay",
            "{INR}", 0.8, 1.2, 1.0, 0.08, "INR", "国际标准化比值", 2),
    Analyte("3173-2", "aPTT in Blood by Coagulation assay",
            "s", 25, 36, 30, 3, "APTT", "活化部分凝血活酶时间", 1),
    Analyte("3255-7", "Fibrinogen [Mass/volume] in Platelet poor plasma by Coagulation assay",
            "g/L", 2, 4, 3, 0.55, "FIB", "纤维蛋白原", 2),
)
# fmt: on


@dataclass(frozen=True, slots=True)
class SyntheticPatient:
    """A made-up Chongqing resident: an 18-digit resident ID with a valid check digit."""

    resident_id: str
    birth_date: dt.date
    sex: str
    district: str
    uuid: str

    @classmethod
    def from_seed(cls, seed: int | str) -> SyntheticPatient:
        """The patient of ``seed``; the same seed always gives the same person."""
        rng = random.Random(f"patient/{seed}")
        region, district = rng.choice(CHONGQING_DISTRICTS)
        born = _FIRST_BIRTH + dt.timedelta(days=rng.randrange((_LAST_BIRTH - _FIRST_BIRTH).days))
        # GB 11643: digits 15-17 order people born the same day; the 17th is odd for men.
        sequence = rng.randrange(500) * 2 + rng.randrange(2)
        first17 = f"{region}{born:%Y%m%d}{sequence:03d}"
        return cls(
            resident_id=first17 + resident_id_check_digit(first17),
            birth_date=born,
            sex="male" if sequence % 2 else "female",
            district=district,
            uuid=str(uuid.uuid5(_NAMESPACE, f"patient/{seed}")),
        )

    def identifier(self) -> dict[str, str]:
        """The resident ID as a FHIR Identifier."""
        return {"system": RESIDENT_ID_SYSTEM, "value": self.resident_id}

    def resource(self) -> dict[str, Any]:
        """The Patient resource, identified by the resident ID only."""
        return {"resourceType": "Patient", "id": self.uuid, "identifier": [self.identifier()]}


def _uuid(institution: str, seed: int, kind: str, number: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{institution}/{seed}/{kind}/{number}"))


def _fhir_time(moment: dt.datetime) -> str:
    """A FHIR dateTime/instant in China Standard Time, to the second."""
    return moment.astimezone(CHINA).isoformat(timespec="seconds")


def _check_now(now: dt.datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware: FHIR times carry an offset")


def report_number(seed: int, report: int) -> str:
    """The LIS report number of report ``report`` of the bundle generated from ``seed``.

    The report index takes exactly five digits, so (seed, report) can be read back unambiguously
    and bundles of different seeds never share a number.
    """
    if seed < 0 or not 0 <= report < 100_000:
        raise ValueError("seed must be non-negative and report below 100000")
    return f"R{seed:08d}{report:05d}"


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def _number(value: float, decimals: int) -> float | int:
    # LIS print integers for counts and enzyme activities: 24 U/L, not 24.0 U/L.
    return round(value) if decimals == 0 else round(value, decimals)


def _value(analyte: Analyte, rng: random.Random) -> float | int:
    # A measured concentration is never negative; clamp to the smallest printable amount.
    smallest = 10.0**-analyte.decimals
    raw = max(rng.gauss(analyte.mean, analyte.sd), smallest)
    return _number(raw, analyte.decimals)


def _interpretation(analyte: Analyte, value: float) -> str:
    if analyte.low is not None and value < analyte.low:
        return "L"
    if analyte.high is not None and value > analyte.high:
        return "H"
    return "N"


def _reference_range(analyte: Analyte) -> dict[str, Any]:
    bounds: dict[str, Any] = {}
    if analyte.low is not None:
        bounds["low"] = _quantity(_number(analyte.low, analyte.decimals), analyte.unit)
    if analyte.high is not None:
        bounds["high"] = _quantity(_number(analyte.high, analyte.decimals), analyte.unit)
    return bounds


def _observation(
    *,
    obs_uuid: str,
    institution: str,
    identifier_value: str,
    analyte: Analyte,
    rng: random.Random,
    subject: dict[str, Any],
    effective: dt.datetime,
    issued: dt.datetime,
    specimen_uuid: str | None,
) -> dict[str, Any]:
    value = _value(analyte, rng)
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": obs_uuid,
        "identifier": [{"system": f"urn:mutualrec:lis:{institution}", "value": identifier_value}],
        "status": "final",
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory"}]}],
        "code": {
            "coding": [
                {"system": LOINC, "code": analyte.loinc, "display": analyte.display},
                {"system": f"urn:mutualrec:local-code:{institution}", "code": analyte.local_code},
            ],
            "text": analyte.text,
        },
        "subject": subject,
        "effectiveDateTime": _fhir_time(effective),
        "issued": _fhir_time(issued),
        "valueQuantity": _quantity(value, analyte.unit),
        "referenceRange": [_reference_range(analyte)],
        "interpretation": [
            {"coding": [{"system": INTERPRETATION, "code": _interpretation(analyte, value)}]}
        ],
    }
    if specimen_uuid is not None:
        resource["specimen"] = {"reference": f"urn:uuid:{specimen_uuid}"}
    return resource


def _report_times(rng: random.Random, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """(collected, issued): blood drawn in the last 30 days, reported 30-150 minutes later."""
    issued = now - dt.timedelta(seconds=rng.randrange(60, 30 * 86400))
    collected = issued - dt.timedelta(seconds=rng.randrange(30 * 60, 150 * 60))
    return collected, issued


def _report_sizes(count: int, rng: random.Random) -> list[int]:
    """``count`` Observations split into reports of 10-20 (fewer only when count is below 10)."""
    low, high = REPORT_SIZE
    sizes: list[int] = []
    remaining = count
    while remaining > 0:
        # Never leave a remainder too small for a report of its own.
        size = remaining if remaining <= high else rng.randint(low, min(high, remaining - low))
        sizes.append(size)
        remaining -= size
    return sizes


def _entry(resource: dict[str, Any]) -> dict[str, Any]:
    return {
        "fullUrl": f"urn:uuid:{resource['id']}",
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"]},
    }


def make_bundle(
    seed: int,
    *,
    observations: int,
    bundle_type: str = "batch",
    institution: str = DEFAULT_INSTITUTION,
    now: dt.datetime,
    patients_per_bundle: int | None = None,
) -> dict[str, Any]:
    """A Bundle of exactly ``observations`` lab Observations, as an LIS would push them.

    Each patient gets a Patient entry and reports of 10-20 Observations; each report has a
    Specimen and a DiagnosticReport grouping its Observations. Entries reference each other by
    ``urn:uuid:`` fullUrls (UUID5 of institution, seed and position). ``patients_per_bundle``
    defaults to one patient per 30 Observations. Every time lies before ``now`` (timezone-aware).
    """
    _check_now(now)
    if observations < 1:
        raise ValueError("a bundle needs at least one observation")
    if bundle_type not in {"batch", "transaction"}:
        raise ValueError("bundle_type must be batch or transaction")
    patients = patients_per_bundle or math.ceil(observations / OBSERVATIONS_PER_PATIENT)
    patients = max(1, min(patients, observations))
    rng = random.Random(f"bundle/{institution}/{seed}")
    entries: list[dict[str, Any]] = []
    report = 0
    obs_number = 0
    for p in range(patients):
        patient = SyntheticPatient.from_seed(f"{institution}/{seed}/{p}")
        entries.append(_entry(patient.resource()))
        subject = {"reference": f"urn:uuid:{patient.uuid}"}
        share = observations // patients + (1 if p < observations % patients else 0)
        for size in _report_sizes(share, rng):
            number = report_number(seed, report)
            collected, issued = _report_times(rng, now)
            specimen_uuid = _uuid(institution, seed, "specimen", report)
            specimen = {
                "resourceType": "Specimen",
                "id": specimen_uuid,
                "subject": subject,
                "collection": {"collectedDateTime": _fhir_time(collected)},
            }
            results: list[dict[str, Any]] = []
            for n, analyte in enumerate(rng.sample(ANALYTES, size), start=1):
                results.append(
                    _observation(
                        obs_uuid=_uuid(institution, seed, "observation", obs_number),
                        institution=institution,
                        identifier_value=f"{number}-{n}",
                        analyte=analyte,
                        rng=rng,
                        subject=subject,
                        effective=collected,
                        issued=issued,
                        specimen_uuid=specimen_uuid,
                    )
                )
                obs_number += 1
            diagnostic_report = {
                "resourceType": "DiagnosticReport",
                "id": _uuid(institution, seed, "report", report),
                "identifier": [
                    {"system": f"urn:mutualrec:lis-report:{institution}", "value": number}
                ],
                "status": "final",
                "code": {"coding": [{"system": LOINC, "code": REPORT_CODE}]},
                "subject": subject,
                "issued": _fhir_time(issued),
                "result": [{"reference": f"urn:uuid:{o['id']}"} for o in results],
            }
            entries.append(_entry(specimen))
            entries.append(_entry(diagnostic_report))
            entries.extend(_entry(o) for o in results)
            report += 1
    return {
        "resourceType": "Bundle",
        "id": _uuid(institution, seed, "bundle", 0),
        "type": bundle_type,
        "timestamp": _fhir_time(now),
        "entry": entries,
    }


def to_bytes(document: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON with Chinese text unescaped, as an LIS sends it."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def bundle_bytes(
    seed: int,
    *,
    observations: int,
    bundle_type: str = "batch",
    institution: str = DEFAULT_INSTITUTION,
    now: dt.datetime,
    patients_per_bundle: int | None = None,
) -> bytes:
    """:func:`make_bundle` serialized with :func:`to_bytes`."""
    return to_bytes(
        make_bundle(
            seed,
            observations=observations,
            bundle_type=bundle_type,
            institution=institution,
            now=now,
            patients_per_bundle=patients_per_bundle,
        )
    )


def single_observation(
    seed: int,
    *,
    institution: str = DEFAULT_INSTITUTION,
    now: dt.datetime,
    analyte: Analyte | None = None,
) -> dict[str, Any]:
    """One Observation sent on its own: its subject names the patient by resident ID.

    Its identifier ("S" numbers) never collides with those of :func:`make_bundle`.
    """
    _check_now(now)
    rng = random.Random(f"single/{institution}/{seed}")
    patient = SyntheticPatient.from_seed(f"{institution}/single/{seed}")
    collected, issued = _report_times(rng, now)
    return _observation(
        obs_uuid=_uuid(institution, seed, "single-observation", 0),
        institution=institution,
        identifier_value=f"S{seed:08d}-1",
        analyte=analyte or rng.choice(ANALYTES),
        rng=rng,
        subject={"identifier": patient.identifier()},
        effective=collected,
        issued=issued,
        specimen_uuid=None,
    )
