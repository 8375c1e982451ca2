"""The DICOM results (SR, KOS) and what is kept of a study, against the real MRI service.

Every job here runs to its end through the real gateway and the real MRI servicer
(web/tests/series_stack.py: its ingest and its report writer, model doubles), on a PACS
export of a phantom study whose headers, DICOMDIR and folder names carry a canary patient.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import shutil
import subprocess
import tempfile
import uuid
import zipfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pydicom
import pytest
from django.db import connection
from django.test import Client
from pydicom.dataset import Dataset
from rest_framework.authtoken.models import Token

from mri_service.phantom import PhantomSpec, generate_series
from mri_service.tests.layouts import load_phases, write_breastwise_zip, write_pacs_export_zip
from web.accounts.models import User
from web.series import services
from web.series.models import SeriesJob
from web.series.storage import series_root
from web.tests.postgres import free_port
from web.tests.test_series_deidentify import (
    CANARY,
    CANARY_STRINGS,
    MR,
    canary_in,
    real_mr,
    with_canary_folder,
)
from web.tests.test_series_services import analysis, stored_files

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("series_gateway")]

# dicom3tools' validator (scripts/install_dicom_tools.sh installs it), where installed.
DCIODVFY = shutil.which("dciodvfy")
SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"
KOS_CLASS = "1.2.840.10008.5.1.4.1.1.88.59"


@pytest.fixture(autouse=True)
def media(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


# Slices made bright in every phase: the model doubles' probability is a slice's mean
# (min-max normalised) intensity, so these two are flagged and no other is.
FLAGGED = (6, 7)


@cache
def canary_study(*, flagged: bool = True) -> bytes:
    """Returns a PACS export (DICOMDIR, clutter, a folder named after the patient) as bytes."""
    phases = load_phases(generate_series(PhantomSpec(slices=16, size=64, lesion=True, seed=7)))
    for files in phases.values():
        for index, ds in enumerate(files.values()):
            if flagged and index in FLAGGED:
                pixels = ds.pixel_array.copy()
                pixels[:] = pixels.max()
                pixels[0, 0] = 0
                ds.PixelData = pixels.tobytes()
    with tempfile.TemporaryDirectory(prefix="medimg-canary-") as folder:
        source = write_breastwise_zip(phases, Path(folder) / "phases.zip")
        plain = write_pacs_export_zip(
            source, Path(folder) / "plain.zip", patient=CANARY, dicomdir=True, clutter=True
        )
        return with_canary_folder(plain, Path(folder) / "canary.zip").read_bytes()


def input_images(data: bytes) -> dict[str, Dataset]:
    """Returns the MR images of a study zip by SOPInstanceUID."""
    found: dict[str, Dataset] = {}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            try:
                ds = pydicom.dcmread(io.BytesIO(archive.read(info)))
            except Exception:
                continue
            if ds.get("SOPClassUID") == MR:
                found[str(ds.SOPInstanceUID)] = ds
    return found


def zip_file(data: bytes, name: str = "case.zip") -> io.BytesIO:
    stream = io.BytesIO(data)
    stream.name = name
    return stream


def api_client(user: User) -> Client:
    token, _ = Token.objects.get_or_create(user=user)
    return Client(headers={"Authorization": f"Token {token.key}"})


def run_next() -> SeriesJob:
    job = services.series_job_claim(worker="w1")
    assert job is not None
    return services.series_job_run(job=job)


def referenced_uids(ds: Dataset) -> set[str]:
    """Returns every ReferencedSOPInstanceUID anywhere in a dataset's nested sequences."""
    found: set[str] = set()

    def visit(dataset: Dataset, element: Any) -> None:
        if element.keyword == "ReferencedSOPInstanceUID":
            found.add(str(element.value))

    ds.walk(visit)
    return found


def served_dicom(response: Any) -> Dataset:
    body = b"".join(response.streaming_content)
    return pydicom.dcmread(io.BytesIO(body))


def done_canary_job(user: User, *, flagged: bool = True) -> SeriesJob:
    services.series_job_create(user=user, upload=io.BytesIO(canary_study(flagged=flagged)))
    job = run_next()
    assert job.status == "done", (job.error_code, job.error_message)
    return job


# --- the SR and the KOS -----------------------------------------------------------------------


def test_the_job_asks_for_the_dicom_results_and_keeps_them_de_identified(alice: User) -> None:
    job = done_canary_job(alice)
    images = input_images(canary_study())
    assert job.positive_slices == list(FLAGGED) and job.sr_bytes > 0 and job.kos_bytes > 0
    flagged = {
        image["sop_instance_uid"]
        for finding in job.slices
        if finding["positive"]
        for image in finding["images"]
    }
    for name, sop_class in (("sr.dcm", SR_CLASS), ("kos.dcm", KOS_CLASS)):
        path = series_root() / "reports" / job.pk.hex / name
        assert path.stat().st_mode & 0o077 == 0
        data = path.read_bytes()
        assert canary_in(data) == [], name
        ds = pydicom.dcmread(io.BytesIO(data))
        assert ds.SOPClassUID == sop_class
        assert ds.PatientIdentityRemoved == "YES"
        codes = [c.CodeValue for c in ds.DeidentificationMethodCodeSequence]
        assert codes[:2] == ["113100", "113110"]
        # Retain UIDs: the study is the hospital's, and every reference resolves to its images.
        assert ds.StudyInstanceUID == next(iter(images.values())).StudyInstanceUID
        references = referenced_uids(ds)
        assert references and references <= set(images)
        assert flagged <= references if sop_class == KOS_CLASS else references & flagged
        # The demo models' label survives the de-identification.
        assert "NOT FOR CLINICAL USE" in ds.SeriesDescription
        assert "StudyDescription" not in ds
        if DCIODVFY:  # and the object is still valid DICOM: no errors (a warning for Study ID)
            checked = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True)
            errors = [line for line in checked.stderr.splitlines() if line.startswith("Error")]
            assert errors == [], errors


def test_a_study_with_no_flagged_slice_has_an_sr_and_no_kos(
    alice: User, client_alice: Client
) -> None:
    job = done_canary_job(alice, flagged=False)
    assert job.positive_slices == [] and job.sr_bytes > 0 and job.kos_bytes == 0
    page = client_alice.get(f"/series/{job.pk}/").content.decode()
    assert "DICOM report (SR)" in page and "Key images (KOS)" not in page
    missing = api_client(alice).get(f"/api/v1/series/{job.pk}/kos")
    assert missing.status_code == 404
    assert missing.json()["error"]["reason"] == "SERIES_KEY_IMAGES_NONE"
    assert "flagged no slice" in missing.json()["error"]["message"]
    assert client_alice.get(f"/series/{job.pk}/kos.dcm").status_code == 404
    assert api_client(alice).get(f"/api/v1/series/{job.pk}/").json()["kos_url"] is None


def test_the_series_page_links_and_serves_both_to_the_owner_only(
    alice: User, client_alice: Client, client_bob: Client
) -> None:
    job = done_canary_job(alice)
    page = client_alice.get(f"/series/{job.pk}/").content.decode()
    assert f'href="/series/{job.pk}/sr.dcm"' in page and "DICOM report (SR)" in page
    assert f'href="/series/{job.pk}/kos.dcm"' in page and "Key images (KOS)" in page
    assert "not for clinical use" in page.lower()
    images = set(input_images(canary_study()))
    for kind, sop_class, suffix in (("sr", SR_CLASS, "sr"), ("kos", KOS_CLASS, "key-images")):
        served = client_alice.get(f"/series/{job.pk}/{kind}.dcm")
        assert served.status_code == 200 and served["Content-Type"] == "application/dicom"
        assert served["Content-Disposition"] == (
            f'attachment; filename="series-{job.pk}-{suffix}.dcm"'
        )
        assert served["Cache-Control"] == "no-store, private"
        ds = served_dicom(served)
        assert ds.SOPClassUID == sop_class and referenced_uids(ds) <= images
        assert canary_in(str(ds).encode()) == []
        # Bob gets what a job that does not exist gets.
        assert client_bob.get(f"/series/{job.pk}/{kind}.dcm").status_code == 404
        assert client_alice.get(f"/series/{uuid.uuid4()}/{kind}.dcm").status_code == 404


def test_the_api_serves_both_as_application_dicom_with_its_404s(alice: User, bob: User) -> None:
    job = done_canary_job(alice)
    api, other = api_client(alice), api_client(bob)
    body = api.get(f"/api/v1/series/{job.pk}/").json()
    assert body["sr_url"] == f"http://testserver/api/v1/series/{job.pk}/sr"
    assert body["kos_url"] == f"http://testserver/api/v1/series/{job.pk}/kos"
    images = set(input_images(canary_study()))
    for kind, sop_class in (("sr", SR_CLASS), ("kos", KOS_CLASS)):
        # Whatever the client accepts: a DICOM client asks for application/dicom.
        for accept in ("application/dicom", "*/*", "application/json"):
            served = api.get(f"/api/v1/series/{job.pk}/{kind}", HTTP_ACCEPT=accept)
            assert served.status_code == 200 and served["Content-Type"] == "application/dicom"
            assert served["Content-Disposition"].startswith("attachment; filename=")
            ds = served_dicom(served)
            assert ds.SOPClassUID == sop_class and referenced_uids(ds) <= images
        stranger = other.get(f"/api/v1/series/{job.pk}/{kind}", HTTP_ACCEPT="application/dicom")
        missing = api.get(f"/api/v1/series/{uuid.uuid4()}/{kind}")
        assert stranger.status_code == missing.status_code == 404
        assert stranger["Content-Type"] == "application/json"
        assert {**stranger.json()["error"], "request_id": ""} == {
            **missing.json()["error"],
            "request_id": "",
        }
        assert Client().get(f"/api/v1/series/{job.pk}/{kind}").status_code == 401


def test_a_job_that_has_not_finished_has_neither(alice: User, client_alice: Client) -> None:
    job = services.series_job_create(user=alice, upload=io.BytesIO(canary_study()))
    api = api_client(alice)
    for kind, reason in (("sr", "SERIES_REPORT_NONE"), ("kos", "SERIES_KEY_IMAGES_NONE")):
        answer = api.get(f"/api/v1/series/{job.pk}/{kind}")
        assert answer.status_code == 404 and answer.json()["error"]["reason"] == reason
        assert "has not finished" in answer.json()["error"]["message"]
        assert client_alice.get(f"/series/{job.pk}/{kind}.dcm").status_code == 404
    body = api.get(f"/api/v1/series/{job.pk}/").json()
    assert (body["sr_url"], body["kos_url"]) == (None, None)
    assert "DICOM report (SR)" not in client_alice.get(f"/series/{job.pk}/").content.decode()


# --- what is kept of the study ----------------------------------------------------------------


def test_after_success_the_original_is_replaced_by_its_de_identified_copy(
    alice: User, media: Path
) -> None:
    job = done_canary_job(alice)
    assert job.upload == SeriesJob.Upload.DEIDENTIFIED
    stored = (series_root() / job.zip_name).read_bytes()
    assert stored != canary_study() and canary_in(stored) == []
    kept = input_images(stored)
    assert set(kept) == set(input_images(canary_study()))  # every image, same UIDs
    assert all(ds.PatientIdentityRemoved == "YES" for ds in kept.values())
    assert [p for p in stored_files(media) if p.startswith("series/zips/")] == [
        f"series/zips/{job.pk.hex}.zip"
    ]
    services.series_job_delete(job=job)
    assert stored_files(media) == []


def refused_study() -> bytes:
    """A zip the service refuses for good: one real MR (pydicom's) with the canary, no DCE."""
    ds = real_mr()
    ds.PatientName, ds.PatientID = CANARY.name, CANARY.patient_id
    ds.PatientBirthDate = CANARY.birth_date
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("IM000001", buffer.getvalue())
    return archive.getvalue()


def queue_unchecked(user: User, data: bytes, settings: Any) -> SeriesJob:
    """Queues a study while the gateway cannot check it (so the job's analysis does)."""
    address = settings.GATEWAY_ADDR
    settings.GATEWAY_ADDR = f"127.0.0.1:{free_port()}"
    try:
        job = services.series_job_create(user=user, upload=io.BytesIO(data))
    finally:
        settings.GATEWAY_ADDR = address
    assert (job.status, job.study) == ("queued", {})
    return job


def test_a_study_refused_for_good_leaves_nothing(alice: User, media: Path, settings: Any) -> None:
    queue_unchecked(alice, refused_study(), settings)
    job = run_next()
    assert (job.status, job.error_code, job.retryable) == ("failed", "INVALID_ARGUMENT", False)
    assert job.upload == SeriesJob.Upload.DELETED
    assert stored_files(media) == []
    assert canary_in(job.error_message.encode()) == []


def test_a_transient_failure_keeps_the_original_for_its_retry(
    alice: User, media: Path, settings: Any
) -> None:
    queued = services.series_job_create(user=alice, upload=io.BytesIO(canary_study()))
    address = settings.GATEWAY_ADDR
    settings.GATEWAY_ADDR = f"127.0.0.1:{free_port()}"
    settings.WEB_SERIES_RETRIES = 0  # the last attempt (automatic retries read it the same)
    job = run_next()
    assert (job.status, job.error_code, job.retryable) == ("failed", "UNAVAILABLE", True)
    assert job.upload == SeriesJob.Upload.ORIGINAL
    assert (series_root() / queued.zip_name).read_bytes() == canary_study()
    settings.GATEWAY_ADDR = address
    assert services.series_job_retry(job=job).status == "queued"
    job = run_next()
    assert job.status == "done" and job.upload == SeriesJob.Upload.DEIDENTIFIED
    assert canary_in((series_root() / job.zip_name).read_bytes()) == []


def test_what_cannot_be_de_identified_is_not_kept(
    alice: User, media: Path, caplog: pytest.LogCaptureFixture
) -> None:
    job = services.series_job_create(user=alice, upload=io.BytesIO(canary_study()))
    # A stored upload that no longer reads as a zip, and an SR and a KOS that are no DICOM.
    (series_root() / job.zip_name).write_bytes(b"PK\x03\x04 CANARY^ZEBRA, truncated")
    result = dataclasses.replace(
        analysis(16, {6}), measurement_report=b"CANARY^ZEBRA", key_images=b"\0" * 200
    )
    job = services.series_job_record(job=job, result=result)
    assert job.status == "done" and job.positive_slices == [6]  # the findings stay
    assert (job.upload, job.sr_bytes, job.kos_bytes) == (SeriesJob.Upload.DELETED, 0, 0)
    assert [p for p in stored_files(media) if not p.startswith("series/thumbnails/")] == []
    assert "the sr is not kept" in caplog.text and "the upload is deleted" in caplog.text
    assert "CANARY" not in caplog.text


# --- the canary is nowhere ----------------------------------------------------------------------


def database_dump() -> str:
    """Returns every row of every table as text (the test database: SQLite or PostgreSQL)."""
    rows: list[str] = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            rows.extend(f"{table}: {row!r}" for row in cursor.fetchall())
    return "\n".join(rows)


def stored_texts(root: Path) -> Iterator[tuple[str, bytes]]:
    """Yields every file under root, every member of every zip, and each DICOM one as text."""
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        yield str(path.relative_to(root)), data
        parts = [(str(path), data)]
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    yield f"{path.name}:{info.filename}", info.filename.encode()
                    parts.append((f"{path.name}:{info.filename}", archive.read(info)))
        for name, part in parts:
            yield name, part
            try:
                ds = pydicom.dcmread(io.BytesIO(part))
            except Exception:
                continue
            yield f"{name} (parsed)", str(ds).encode()


def run_through_the_pages(client: Client) -> tuple[SeriesJob, list[bytes]]:
    data = canary_study()
    half = len(data) // 2
    first = client.post(
        "/series/upload/",
        {"upload_id": "", "offset": 0, "total": len(data), "chunk": zip_file(data[:half])},
    )
    upload_id = first.json()["upload_id"]
    last = client.post(
        "/series/upload/",
        {
            "upload_id": upload_id,
            "offset": half,
            "total": len(data),
            "chunk": zip_file(data[half:]),
        },
    )
    assert last.status_code == 201
    job = SeriesJob.objects.get(pk=last.json()["job"])
    answers = [first.content, last.content, client.get(f"/series/{job.pk}/").content]
    job = run_next()
    for path in (f"/series/{job.pk}/", f"/series/{job.pk}/progress", "/series/"):
        answers.append(client.get(path).content)
    for kind in ("sr", "kos"):
        served = client.get(f"/series/{job.pk}/{kind}.dcm")
        answers.append(b"".join(served.streaming_content))  # type: ignore[attr-defined]
        answers.append(str(served.headers).encode())
    return job, answers


def run_through_the_api(user: User) -> tuple[SeriesJob, list[bytes]]:
    api = api_client(user)
    answer = api.post("/api/v1/series/", {"series": zip_file(canary_study())})
    assert answer.status_code == 202
    job_id = answer.json()["id"]
    answers = [answer.content, api.get(f"/api/v1/series/{job_id}/").content]
    job = run_next()
    answers.append(api.get(f"/api/v1/series/{job_id}/").content)
    for kind in ("sr", "kos"):
        served = api.get(f"/api/v1/series/{job_id}/{kind}")
        answers.append(b"".join(served.streaming_content))  # type: ignore[attr-defined]
        answers.append(str(served.headers).encode())
    return job, answers


@pytest.mark.postgres
@pytest.mark.parametrize("way", ["pages", "api"])
def test_no_patient_data_is_kept_logged_or_shown(
    way: str,
    alice: User,
    client_alice: Client,
    media: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    assert canary_in(canary_study())  # the upload really carries it
    if way == "pages":
        job, answers = run_through_the_pages(client_alice)
    else:
        job, answers = run_through_the_api(alice)
    assert job.status == "done" and job.sr_bytes and job.kos_bytes
    # What was shown or answered.
    for answer in answers:
        assert canary_in(answer) == [], answer[:200]
    # What is stored: every table, every file, every zip member, every DICOM header.
    dump = database_dump()
    assert str(job.pk.hex) in dump.replace("-", "") and canary_in(dump.encode()) == []
    texts = dict(stored_texts(media))
    assert any(name.endswith(".zip") for name in texts) and len(texts) > 64
    leaks = {name: canary_in(data) for name, data in texts.items() if canary_in(data)}
    assert leaks == {}
    # What was logged: the web tier's records and the MRI service's and gateway's (they run
    # in this process, so their records reach caplog too), with their extra fields.
    loggers = {record.name.split(".")[0] for record in caplog.records}
    assert {"web", "mri_service"} <= loggers, loggers
    for record in caplog.records:
        text = f"{record.getMessage()} {json.dumps(record.__dict__, default=str)}"
        assert canary_in(text.encode()) == [], text
    out, err = capfd.readouterr()
    assert canary_in((out + err).encode()) == []
    assert all(c not in caplog.text.upper() for c in CANARY_STRINGS)
