"""CatalogService over real gRPC and the catalog admin commands, on SQLite and on PostgreSQL."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

import grpc
import pytest
from sqlalchemy import func, select

from mutualrec.admin_files import read_code_mappings
from mutualrec.cli import main
from mutualrec.client.upload import auth_metadata
from mutualrec.matching.catalog import ItemCategory, load_catalog, packaged_catalog
from mutualrec.matching.facts import InstitutionFacts, InstitutionLevel, Qualification, Scope
from mutualrec.security.api_keys import issue_key, split_token
from mutualrec.services.api_keys import ApiKeys
from mutualrec.storage import catalog_store
from mutualrec.storage.institutions import authenticate, revoke_key, rotate_key
from mutualrec.storage.models import CatalogVersion, CodeMapping, Institution
from mutualrec.v1 import catalog_pb2, catalog_pb2_grpc
from mutualrec.violations import Rejected
from tests.conftest import RunningServer
from tests.helpers import bad_request

HOSPITAL = "H500103001"
SHANGHAI = ZoneInfo("Asia/Shanghai")
PACKAGED_TEXT = (
    resources.files("mutualrec.matching").joinpath("data/recognition_items.csv").read_text("utf-8")
)
LAB_K_ROW = "LAB-K,钾,Potassium,lab,2823-3,,,,,7d,4,,6298-4,,"
ESR_ROW_START = "LAB-ESR,"


def _modified_catalog() -> str:
    """The packaged catalog with potassium valid 6 hours at 5 yuan, and without LAB-ESR."""
    assert LAB_K_ROW in PACKAGED_TEXT
    text = PACKAGED_TEXT.replace(LAB_K_ROW, "LAB-K,钾,Potassium,lab,2823-3,,,,,6h,5,,6298-4,,")
    return "".join(
        line for line in text.splitlines(keepends=True) if not line.startswith(ESR_ROW_START)
    )


@dataclass
class CliRun:
    """What one in-process run of the ``mutualrec`` command did."""

    code: int
    out: str
    err: str


Admin = Callable[..., CliRun]


@pytest.fixture
def admin(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Admin:
    """Runs ``mutualrec admin ...`` in this process against the test server's database."""
    settings = server.runtime.settings
    monkeypatch.setenv("MUTUALREC_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("MUTUALREC_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("MUTUALREC_PATIENT_KEY_SECRET", settings.patient_key_secret.decode())
    monkeypatch.setenv("MUTUALREC_AUTO_MIGRATE", "true")

    def run(*argv: str) -> CliRun:
        capsys.readouterr()
        code = main(["admin", *argv])
        out, err = capsys.readouterr()
        return CliRun(code, out, err)

    return run


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def _stub(server: RunningServer) -> catalog_pb2_grpc.CatalogServiceStub:
    return catalog_pb2_grpc.CatalogServiceStub(server.channel)


def _list(
    server: RunningServer, key: str | None, version: str = "", category: str = ""
) -> catalog_pb2.ListItemsResponse:
    response: catalog_pb2.ListItemsResponse = _stub(server).ListItems(
        catalog_pb2.ListItemsRequest(catalog_version=version, category=category),
        metadata=auth_metadata(key) if key else None,
        timeout=30,
    )
    return response


def _get(
    server: RunningServer, key: str | None, code: str, version: str = ""
) -> catalog_pb2.CatalogItem:
    response: catalog_pb2.CatalogItem = _stub(server).GetItem(
        catalog_pb2.GetItemRequest(code=code, catalog_version=version),
        metadata=auth_metadata(key) if key else None,
        timeout=30,
    )
    return response


def _by_code(response: catalog_pb2.ListItemsResponse) -> dict[str, catalog_pb2.CatalogItem]:
    return {item.code: item for item in response.items}


def _categories_in_csv(text: str) -> dict[str, str]:
    return {row["code"]: row["category"] for row in csv.DictReader(io.StringIO(text))}


def test_list_items_gives_the_packaged_catalog(server: RunningServer) -> None:
    key = server.add_hospital(HOSPITAL)

    response = _list(server, key)

    assert response.catalog_version == "2026.2"
    assert response.sha256 == packaged_catalog().sha256
    assert len(response.items) == 112
    items = _by_code(response)
    potassium = items["LAB-K"]
    assert (potassium.name_zh, potassium.name_en, potassium.category) == ("钾", "Potassium", "lab")
    assert list(potassium.loinc) == ["2823-3"]
    assert (potassium.validity, potassium.validity_seconds) == ("7d", 7 * 24 * 3600)
    assert potassium.reference_price == "4.00"
    assert (potassium.modality, potassium.body_part, potassium.contrast) == ("", "", False)
    assert potassium.catalog_version == "2026.2"
    assert "LOINC verified" in potassium.source
    glucose = items["LAB-GLU"]
    assert list(glucose.loinc) == ["14749-6", "2345-7"]
    chest_ct_contrast = items["IMG-CT-CHEST-C"]
    assert chest_ct_contrast.category == "imaging"
    assert (chest_ct_contrast.modality, chest_ct_contrast.body_part) == ("CT", "CHEST")
    assert chest_ct_contrast.contrast is True
    assert list(chest_ct_contrast.satisfies) == ["IMG-CT-CHEST"]
    assert (chest_ct_contrast.validity, chest_ct_contrast.reference_price) == ("90d", "450.00")
    assert list(items["IMG-CT-CHEST"].satisfies) == []
    assert items["IMG-CT-CHEST"].contrast is False


def test_list_items_filters_by_category(server: RunningServer) -> None:
    key = server.add_hospital(HOSPITAL)
    expected = _categories_in_csv(PACKAGED_TEXT)

    labs = _list(server, key, category="lab")
    imaging = _list(server, key, category="IMAGING")

    assert {item.code for item in labs.items} == {c for c, k in expected.items() if k == "lab"}
    assert {item.code for item in imaging.items} == {
        c for c, k in expected.items() if k == "imaging"
    }
    assert labs.items
    assert imaging.items


def test_get_item_and_not_found(server: RunningServer) -> None:
    key = server.add_hospital(HOSPITAL)

    item = _get(server, key, "img-ct-chest-c")
    assert item.code == "IMG-CT-CHEST-C"
    assert item.catalog_version == "2026.2"
    assert _get(server, key, "LAB-K", version="2026.2").validity == "7d"

    with pytest.raises(grpc.RpcError) as unknown:
        _get(server, key, "LAB-NOPE")
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as unknown_version:
        _get(server, key, "LAB-K", version="1999.1")
    assert unknown_version.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as missing:
        _get(server, key, "  ")
    assert missing.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request(missing.value) == {"code": "MISSING_FIELD"}


def test_list_items_rejects_bad_category_and_unknown_version(server: RunningServer) -> None:
    key = server.add_hospital(HOSPITAL)

    with pytest.raises(grpc.RpcError) as bad_category:
        _list(server, key, category="xray")
    assert bad_category.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request(bad_category.value) == {"category": "UNKNOWN_CATEGORY"}
    with pytest.raises(grpc.RpcError) as unknown_version:
        _list(server, key, version="2031.9")
    assert unknown_version.value.code() == grpc.StatusCode.NOT_FOUND


def test_catalog_needs_a_valid_key(server: RunningServer) -> None:
    key = server.add_hospital(HOSPITAL)
    assert _list(server, key).items
    with server.runtime.sessions.begin() as session:
        assert revoke_key(session, split_token(key)[0])

    for call in (lambda k: _list(server, k), lambda k: _get(server, k, "LAB-K")):
        for presented in (None, key, "mrk_not_a_key"):
            with pytest.raises(grpc.RpcError) as refused:
                call(presented)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_rotated_key_keeps_working_for_its_grace_period_then_stops(
    server: RunningServer,
) -> None:
    old = server.add_hospital(HOSPITAL)
    old_id = split_token(old)[0]
    rotation = ApiKeys(server.runtime.sessions).rotate(old_id, dt.timedelta(hours=1))
    new = rotation.token

    # Both work during the grace period; the successor speaks for the same hospital.
    assert _list(server, old).items
    assert _list(server, new).items
    assert split_token(new)[0] != old_id
    with server.runtime.sessions() as session:
        assert authenticate(session, new).institution_code == HOSPITAL
    # A revocation later than the grace period cannot extend it; an earlier one shortens it.
    with server.runtime.sessions.begin() as session:
        assert not revoke_key(session, old_id, at=dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
        assert revoke_key(session, old_id)

    with pytest.raises(grpc.RpcError) as refused:
        _list(server, old)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert _list(server, new).items
    with server.runtime.sessions.begin() as session, pytest.raises(LookupError):
        rotate_key(session, old_id, issue_key(), dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))


def test_new_catalog_version_becomes_current_and_old_stays(
    server: RunningServer, admin: Admin, tmp_path: Path
) -> None:
    key = server.add_hospital(HOSPITAL)
    assert _list(server, key).catalog_version == "2026.2"
    modified = _write(tmp_path, "catalog-2026.3.csv", _modified_catalog())

    loaded = admin("load-catalog", modified, "--version", "2026.3")

    assert loaded.code == 0, loaded.err
    assert "catalog 2026.3 loaded: 111 items" in loaded.out
    current = _list(server, key)
    assert current.catalog_version == "2026.3"
    assert current.sha256 == load_catalog(_modified_catalog(), "2026.3").sha256
    assert len(current.items) == 111
    potassium = _by_code(current)["LAB-K"]
    assert (potassium.validity, potassium.validity_seconds) == ("6h", 6 * 3600)
    assert (potassium.reference_price, potassium.catalog_version) == ("5.00", "2026.3")
    assert "LAB-ESR" not in _by_code(current)
    with pytest.raises(grpc.RpcError) as dropped:
        _get(server, key, "LAB-ESR")
    assert dropped.value.code() == grpc.StatusCode.NOT_FOUND

    old = _list(server, key, version="2026.2")
    assert (old.catalog_version, len(old.items)) == ("2026.2", 112)
    assert _by_code(old)["LAB-K"].validity == "7d"
    assert _get(server, key, "LAB-ESR", version="2026.2").catalog_version == "2026.2"

    listing = admin("catalog-versions")
    assert listing.code == 0
    lines = listing.out.splitlines()
    assert [line.split()[0] for line in lines] == ["2026.2", "2026.3"]
    assert "112 items" in lines[0]
    assert not lines[0].endswith("(current)")
    assert "111 items" in lines[1]
    assert lines[1].endswith("(current)")


def test_a_version_never_changes(server: RunningServer, admin: Admin, tmp_path: Path) -> None:
    key = server.add_hospital(HOSPITAL)
    _list(server, key)
    modified_text = _modified_catalog()
    modified = _write(tmp_path, "catalog.csv", modified_text)

    again = admin("load-catalog", modified, "--version", "2026.2")

    assert again.code == 2
    assert "version: catalog 2026.2 was loaded from a file with SHA-256" in again.err
    with server.runtime.sessions() as session:
        with pytest.raises(catalog_store.CatalogConflict) as conflict:
            catalog_store.ensure_catalog(
                session, load_catalog(modified_text, "2026.2"), modified_text
            )
        assert [(v.field, v.reason) for v in conflict.value.violations] == [
            ("version", "CATALOG_VERSION_EXISTS")
        ]
        session.rollback()
        # The same content under the same version is a no-op, not a second row.
        assert not catalog_store.ensure_catalog(session, packaged_catalog(), PACKAGED_TEXT)
        catalog_store.ensure_packaged_catalog(session)
        session.commit()
        assert session.scalar(select(func.count()).select_from(CatalogVersion)) == 1
    assert _list(server, key).sha256 == packaged_catalog().sha256

    first = admin("load-catalog", modified, "--version", "2026.3")
    repeat = admin("load-catalog", modified, "--version", "2026.3")
    assert (first.code, repeat.code) == (0, 0)
    assert "already loaded" in repeat.out
    assert len(admin("catalog-versions").out.splitlines()) == 2


def test_load_catalog_rejects_bad_input(
    server: RunningServer, admin: Admin, tmp_path: Path
) -> None:
    bad_loinc = PACKAGED_TEXT.replace(LAB_K_ROW, "LAB-K,钾,Potassium,lab,2823-4,,,,,7d,4,,6298-4,,")
    broken = _write(tmp_path, "broken.csv", bad_loinc)
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("code,name_zh\nLAB-K,caf\xe9\n".encode("latin-1"))
    good = _write(tmp_path, "good.csv", PACKAGED_TEXT)

    rejected = admin("load-catalog", broken, "--version", "2026.3")
    assert rejected.code == 2
    assert "line 39: loinc: 2823-4: the LOINC check digit" in rejected.err
    not_utf8 = admin("load-catalog", str(latin1), "--version", "2026.3")
    assert (not_utf8.code, "not UTF-8" in not_utf8.err) == (2, True)
    missing = admin("load-catalog", str(tmp_path / "absent.csv"), "--version", "2026.3")
    assert missing.code == 2
    bad_version = admin("load-catalog", good, "--version", "2026 spring")
    assert bad_version.code == 2
    assert "version: a version is up to 32 letters" in bad_version.err
    with pytest.raises(SystemExit) as no_version:
        admin("load-catalog", good)
    assert no_version.value.code == 2

    with server.runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(CatalogVersion)) in (0, 1)
        assert catalog_store.catalog_for_version(session, "2026.3") is None


def _institution_id(server: RunningServer, code: str) -> int:
    with server.runtime.sessions() as session:
        found = session.scalar(select(Institution.id).where(Institution.code == code))
    assert found is not None
    return found


def test_code_mappings_load_replace_and_reject(
    server: RunningServer, admin: Admin, tmp_path: Path
) -> None:
    server.add_hospital(HOSPITAL)
    institution_id = _institution_id(server, HOSPITAL)
    mapping = _write(
        tmp_path,
        "mapping.csv",
        "local_code,item_codes,description\n"
        "BMP-01,LAB-K;lab-na; LAB-CL,基础代谢组合\n"
        "GLU-F,LAB-GLU,空腹血糖\n"
        "NC-77,,院内自定项目\n",
    )

    loaded = admin("load-mappings", "--institution", HOSPITAL, mapping)

    assert loaded.code == 0, loaded.err
    assert f"code mapping of {HOSPITAL} loaded: 3 local code(s)" in loaded.out
    with server.runtime.sessions() as session:
        assert catalog_store.institution_mappings(session, institution_id) == {
            "BMP-01": ("LAB-K", "LAB-NA", "LAB-CL"),
            "GLU-F": ("LAB-GLU",),
            "NC-77": (),
        }

    smaller = _write(tmp_path, "smaller.csv", "local_code,item_codes\nK-ONLY,LAB-K\n")
    assert admin("load-mappings", "--institution", HOSPITAL, smaller).code == 0
    with server.runtime.sessions() as session:
        assert catalog_store.institution_mappings(session, institution_id) == {"K-ONLY": ("LAB-K",)}

    bad = _write(
        tmp_path,
        "bad.csv",
        "local_code,item_codes,description\n"
        "BMP-02,LAB-K;LAB-NA,ok\n"
        "PANEL-X,LAB-K;LAB-POTASSIUM,typo\n"
        ",LAB-K,no code\n"
        "BMP-02,LAB-CL,twice\n",
    )
    rejected = admin("load-mappings", "--institution", HOSPITAL, bad)
    assert rejected.code == 2
    assert "line 3: item_codes: LAB-POTASSIUM is not an item of catalog 2026.2" in rejected.err
    assert "line 4: local_code" in rejected.err
    assert "line 5: local_code: BMP-02 is already mapped on line 2" in rejected.err
    with server.runtime.sessions() as session:
        # Nothing of a rejected file is applied.
        assert catalog_store.institution_mappings(session, institution_id) == {"K-ONLY": ("LAB-K",)}
        with pytest.raises(Rejected) as everything:
            catalog_store.replace_code_mappings(
                session,
                "NO-SUCH-HOSPITAL",
                read_code_mappings(
                    "local_code,item_codes\nA,LAB-NOPE\n", catalog_store.current_catalog(session)
                ),
            )
        assert [(v.field, v.reason) for v in everything.value.violations] == [
            ("institution", "UNKNOWN_INSTITUTION"),
            ("line 2: item_codes", "UNKNOWN_ITEM_CODE"),
        ]
        session.rollback()
        assert session.scalar(select(func.count()).select_from(CodeMapping)) == 1

    wrong_header = _write(tmp_path, "header.csv", "code,items\nA,LAB-K\n")
    header = admin("load-mappings", "--institution", HOSPITAL, wrong_header)
    assert header.code == 2
    assert "line 1: local_code: column 'local_code' is missing" in header.err
    empty = _write(tmp_path, "empty.csv", "local_code,item_codes,description\n")
    assert admin("load-mappings", "--institution", HOSPITAL, empty).code == 2
    unknown = admin("load-mappings", "--institution", "H-NONE", smaller)
    assert unknown.code == 2
    assert "institution: no institution with code 'H-NONE'" in unknown.err


def test_qualifications_round_trip(server: RunningServer, admin: Admin) -> None:
    added = admin(
        "add-institution",
        "--code",
        "CD-0001",
        "--name",
        "四川大学华西医院",
        "--district",
        "Wuhou",
        "--level",
        "tertiary",
        "--city",
        "chengdu",
    )
    assert added.code == 0, added.err
    by_item = admin(
        "add-qualification",
        "--institution",
        "CD-0001",
        "--item",
        "img-ct-chest",
        "--scope",
        "region",
        "--from",
        "2026-01-01",
    )
    by_category = admin(
        "add-qualification",
        "--institution",
        "CD-0001",
        "--category",
        "lab",
        "--scope",
        "city",
        "--from",
        "2026-03-01T08:00+00:00",
        "--until",
        "2027-03-01T09:30",
    )
    assert (by_item.code, by_category.code) == (0, 0), by_item.err + by_category.err
    assert "CD-0001 holds item IMG-CT-CHEST, region scope" in by_item.out

    with server.runtime.sessions() as session:
        held = catalog_store.qualifications(session)
        facts = catalog_store.institution_facts(session)
    assert held == [
        Qualification(
            "CD-0001",
            "IMG-CT-CHEST",
            None,
            Scope.REGION,
            dt.datetime(2026, 1, 1, tzinfo=SHANGHAI),
            None,
        ),
        Qualification(
            "CD-0001",
            None,
            ItemCategory.LAB,
            Scope.CITY,
            dt.datetime(2026, 3, 1, 8, tzinfo=dt.UTC),
            dt.datetime(2027, 3, 1, 9, 30, tzinfo=SHANGHAI),
        ),
    ]
    assert held[0].valid_from == dt.datetime(2025, 12, 31, 16, tzinfo=dt.UTC)
    assert facts[_institution_id(server, "CD-0001")] == InstitutionFacts(
        "CD-0001", "四川大学华西医院", InstitutionLevel.TERTIARY, "chengdu", "chengdu-chongqing"
    )


def test_add_qualification_rejects_bad_input(server: RunningServer, admin: Admin) -> None:
    server.add_hospital(HOSPITAL)

    def qualify(*options: str) -> CliRun:
        return admin("add-qualification", "--institution", HOSPITAL, *options)

    unknown_item = qualify("--item", "IMG-CT-KNEE-X", "--scope", "city", "--from", "2026-01-01")
    assert unknown_item.code == 2
    assert "item_code: IMG-CT-KNEE-X is not an item of catalog 2026.2" in unknown_item.err
    backwards = qualify(
        "--item", "LAB-K", "--scope", "city", "--from", "2026-06-01", "--until", "2026-06-01"
    )
    assert backwards.code == 2
    assert "valid_until: the qualification must end after it starts" in backwards.err
    bad_dates = qualify(
        "--category", "lab", "--scope", "city", "--from", "June 1st", "--until", "2026-02-30"
    )
    assert bad_dates.code == 2
    assert "--from: 'June 1st' is not an ISO date" in bad_dates.err
    assert "--until: '2026-02-30' is not an ISO date" in bad_dates.err
    nobody = admin(
        "add-qualification",
        *("--institution", "H-NONE", "--category", "imaging", "--scope", "national"),
        *("--from", "2026-01-01"),
    )
    assert nobody.code == 2
    assert "institution: no institution with code 'H-NONE'" in nobody.err
    for argv in (
        ("--item", "LAB-K", "--category", "lab", "--scope", "city", "--from", "2026-01-01"),
        ("--item", "LAB-K", "--scope", "district", "--from", "2026-01-01"),
        ("--category", "ct", "--scope", "city", "--from", "2026-01-01"),
        ("--scope", "city", "--from", "2026-01-01"),
    ):
        with pytest.raises(SystemExit) as usage:
            qualify(*argv)
        assert usage.value.code == 2

    with server.runtime.sessions() as session:
        with pytest.raises(Rejected) as naive:
            catalog_store.add_qualification(
                session,
                HOSPITAL,
                item_code="LAB-K",
                category="lab",
                scope="county",
                valid_from=dt.datetime(2026, 1, 1),
                valid_until=None,
                catalog=packaged_catalog(),
            )
        assert [(v.field, v.reason) for v in naive.value.violations] == [
            ("item_code", "ITEM_OR_CATEGORY"),
            ("scope", "UNKNOWN_SCOPE"),
            ("valid_from", "NAIVE_DATETIME"),
        ]
        session.rollback()
        assert catalog_store.qualifications(session) == []


def test_prices_round_trip_and_reject(server: RunningServer, admin: Admin, tmp_path: Path) -> None:
    server.add_hospital(HOSPITAL)
    institution_id = _institution_id(server, HOSPITAL)
    prices = _write(
        tmp_path, "prices.csv", "item_code,price_cny\nLAB-K,4.5\nimg-ct-chest,180\nLAB-CBC,0\n"
    )

    loaded = admin("load-prices", "--institution", HOSPITAL, prices)

    assert loaded.code == 0, loaded.err
    assert f"price list of {HOSPITAL} loaded: 3 item(s)" in loaded.out
    # The administrator is told when the change reaches the running servers.
    assert "in effect on every running server within about a second" in loaded.err
    with server.runtime.sessions() as session:
        # In fen: 4.50, 180 and 0 yuan.
        assert catalog_store.price_list(session, institution_id) == {
            "LAB-K": 450,
            "IMG-CT-CHEST": 18000,
            "LAB-CBC": 0,
        }

    replaced = _write(tmp_path, "replaced.csv", "price_cny,item_code\n5.20,LAB-K\n")
    assert admin("load-prices", "--institution", HOSPITAL, replaced).code == 0
    bad = _write(
        tmp_path,
        "bad.csv",
        "item_code,price_cny\nLAB-K,-1\nLAB-NA,4.555\nLAB-NOPE,3\nLAB-CL,4\nlab-cl,5\nLAB-GLU\n",
    )
    rejected = admin("load-prices", "--institution", HOSPITAL, bad)
    assert rejected.code == 2
    for expected in (
        "line 2: price_cny: a price is a non-negative amount",
        "line 3: price_cny",
        "line 4: item_code: 'LAB-NOPE' is not an item of catalog 2026.2",
        "line 6: item_code: LAB-CL already has a price on line 5",
        "line 7: the row has 1 fields",
    ):
        assert expected in rejected.err
    assert admin("load-prices", "--institution", "H-NONE", replaced).code == 2
    with server.runtime.sessions() as session:
        assert catalog_store.price_list(session, institution_id) == {"LAB-K": 520}  # 5.20 yuan


def test_add_institution_place_defaults(server: RunningServer, admin: Admin) -> None:
    common = ("--name", "Clinic", "--district", "Yuzhong", "--level")
    assert admin("add-institution", "--code", "CQ-9", *common, "primary").code == 0
    assert admin("add-institution", "--code", "CQ-10", *common, "secondary", "--city", "").code == 2

    with server.runtime.sessions() as session:
        facts = {f.code: f for f in catalog_store.institution_facts(session).values()}
    assert facts["CQ-9"] == InstitutionFacts(
        "CQ-9", "Clinic", InstitutionLevel.PRIMARY, "chongqing", "chengdu-chongqing"
    )
    assert "CQ-10" not in facts
