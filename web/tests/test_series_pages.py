"""Series pages, the chunked upload endpoint and the REST API, with Alice (owner) and Bob."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from mri_service.phantom import PhantomSpec, generate_series
from mri_service.tests.layouts import write_pacs_export_zip
from web.accounts.models import User
from web.series import services, study
from web.series.models import SeriesJob
from web.tests.postgres import free_port
from web.tests.test_series_services import analysis, phantom_zip_bytes, stored_files

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("series_gateway")]


@pytest.fixture(autouse=True)
def media(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


def zip_file(data: bytes, name: str = "case.zip") -> io.BytesIO:
    stream = io.BytesIO(data)
    stream.name = name
    return stream


def send_chunk(client: Client, data: bytes, *, offset: int, total: int, upload_id: str = "") -> Any:
    fields = {"upload_id": upload_id, "offset": offset, "total": total, "chunk": zip_file(data)}
    return client.post("/series/upload/", fields)


def done_job(user: User) -> SeriesJob:
    job = services.series_job_create(user=user, upload=io.BytesIO(phantom_zip_bytes()))
    return services.series_job_record(job=job, result=analysis(16, {6, 7}))


def test_the_upload_page_offers_the_chunked_form(client_alice: Client, settings: Any) -> None:
    page = client_alice.get("/series/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "data-series-upload" in html and 'data-chunk-url="/series/upload/"' in html
    assert f'data-max-bytes="{settings.WEB_MAX_SERIES_BYTES}"' in html
    assert "series/upload.js" in html


def test_a_chunked_upload_resumes_and_its_last_chunk_creates_the_job(
    client_alice: Client, alice: User
) -> None:
    data = phantom_zip_bytes()
    half = len(data) // 2
    first = send_chunk(client_alice, data[:half], offset=0, total=len(data))
    assert first.status_code == 200 and first.json()["received"] == half
    upload_id = first.json()["upload_id"]
    assert SeriesJob.objects.count() == 0
    repeated = send_chunk(client_alice, data[:half], offset=0, total=len(data), upload_id=upload_id)
    assert repeated.status_code == 409 and repeated.json()["received"] == half
    status = client_alice.get(f"/series/upload/{upload_id}/")
    assert status.json() == {"upload_id": upload_id, "received": half}
    last = send_chunk(client_alice, data[half:], offset=half, total=len(data), upload_id=upload_id)
    assert last.status_code == 201
    job = SeriesJob.objects.get()
    assert last.json()["url"] == f"/series/{job.pk}/" and job.user == alice
    assert job.zip_bytes == len(data)


@pytest.mark.parametrize(
    ("data", "total", "status", "code"),
    [
        (b"", 0, 400, "SERIES_EMPTY"),
        (b"plain text, not a zip", 21, 400, "SERIES_NOT_ZIP"),
        (b"PK\x03\x04", 2 * 1024 * 1024 * 1024, 413, "SERIES_TOO_LARGE"),
    ],
)
def test_a_bad_chunked_upload_is_a_4xx_with_no_row_and_no_file(
    client_alice: Client, media: Path, data: bytes, total: int, status: int, code: str
) -> None:
    answer = send_chunk(client_alice, data, offset=0, total=total)
    assert answer.status_code == status and answer.json()["error"]["code"] == code
    assert answer.json()["error"]["message"]
    assert SeriesJob.objects.count() == 0 and stored_files(media) == []


def test_a_chunk_without_numbers_is_a_400(client_alice: Client) -> None:
    answer = client_alice.post("/series/upload/", {"offset": "x", "chunk": zip_file(b"PK")})
    assert answer.status_code == 400


def test_the_form_without_the_script_uploads_the_whole_zip(client_alice: Client) -> None:
    answer = client_alice.post("/series/", {"series": zip_file(phantom_zip_bytes())})
    job = SeriesJob.objects.get()
    assert answer.status_code == 303 and answer["Location"] == f"/series/{job.pk}/"


def test_the_form_refuses_a_file_that_is_not_a_zip(client_alice: Client, media: Path) -> None:
    answer = client_alice.post("/series/", {"series": zip_file(b"hello")})
    assert answer.status_code == 400 and "not a zip archive" in answer.content.decode()
    assert SeriesJob.objects.count() == 0 and stored_files(media) == []


def test_a_queued_job_shows_live_progress_and_its_json(client_alice: Client, alice: User) -> None:
    job = services.series_job_create(user=alice, upload=io.BytesIO(phantom_zip_bytes()))
    page = client_alice.get(f"/series/{job.pk}/")
    html = page.content.decode()
    assert page.status_code == 200 and page["Cache-Control"] == "no-store, private"
    assert f'data-progress-url="/series/{job.pk}/progress"' in html and "series/job.js" in html
    progress = client_alice.get(f"/series/{job.pk}/progress").json()
    assert progress["status"] == "queued" and progress["progress"] == 0.0


def test_a_done_job_shows_the_viewer_with_flagged_slices_plot_and_demo_warning(
    client_alice: Client, alice: User
) -> None:
    job = done_job(alice)
    html = client_alice.get(f"/series/{job.pk}/").content.decode()
    assert html.count('class="slice slice-positive"') == 2 and html.count('class="slice"') == 14
    assert 'data-curve="single"' in html and 'data-curve="scantype"' in html
    assert "Demo model: not for clinical use." in html
    # Each flagged slice by its index and its pre-contrast image's InstanceNumber.
    assert (
        "<strong>2</strong> of 16 slices flagged: 6 (InstanceNumber 94), 7 (InstanceNumber 93)."
        in html
    )
    assert 'alt="Slice 6 (InstanceNumber 94), flagged"' in html
    thumb = client_alice.get(f"/series/{job.pk}/slices/6.png")
    assert thumb.status_code == 200 and thumb["Content-Type"] == "image/png"
    assert thumb["Cache-Control"] == "no-store, private"
    assert client_alice.get(f"/series/{job.pk}/slices/16.png").status_code == 404


def test_a_done_job_shows_the_series_read_and_those_left_out_with_why(
    client_alice: Client, alice: User
) -> None:
    html = client_alice.get(f"/series/{done_job(alice).pk}/").content.decode()
    assert "1.2.826.0.1.3680043.8.498.1" in html
    selected = html[html.index("data-selected-series") : html.index("</table>")]
    for number, phase in enumerate(("pre", "1st_pass", "2nd_pass", "3rd_pass"), start=3):
        row = selected[selected.index(f'data-phase="{phase}"') :]
        assert f"<td>{number}</td>" in row[: row.index("</tr>")]
        assert f"ax dyn {phase}" in row[: row.index("</tr>")]
    assert "Pre-contrast" in selected
    assert "Series 1, <q>localizer</q> (MR, 3 files): a localiser." in html
    assert "<code>case/DICOMDIR</code>: a DICOMDIR." in html
    assert "one series per phase, by description and acquisition time" in html


def test_a_queued_job_shows_the_series_the_upload_check_found(
    client_alice: Client, alice: User
) -> None:
    job = services.series_job_create(user=alice, upload=io.BytesIO(phantom_zip_bytes()))
    html = client_alice.get(f"/series/{job.pk}/").content.decode()
    assert "data-selected-series" in html and 'data-phase="3rd_pass"' in html
    assert job.study["study_instance_uid"] in html


def test_a_pacs_export_shows_the_series_the_service_chose_and_those_it_left_out(
    client_alice: Client, alice: User, tmp_path: Path
) -> None:
    # A Siemens-style export in flat folders, with a localiser, a non-fat-sat T1 and a
    # Mac's clutter: the real MRI service (in-process) picks the four dynamic phases.
    series = generate_series(PhantomSpec(slices=8, size=64, lesion=True, seed=3))
    data = write_pacs_export_zip(
        series, tmp_path / "pacs.zip", localizer=True, t1=True
    ).read_bytes()
    answer = client_alice.post("/series/", {"series": zip_file(data)})
    assert answer.status_code == 303
    job = SeriesJob.objects.get()
    assert job.study["selected_by"] == "series"
    assert [u["series_description"] for u in job.study["unused_series"]] == [
        "localizer",
        "t1_fl3d_tra_nonfs",
    ]
    html = client_alice.get(answer["Location"]).content.decode()
    selected = html[html.index("data-selected-series") : html.index("</table>")]
    assert all(p["series_description"] in selected for p in job.study["phases"])
    assert "Series 1, <q>localizer</q> (MR, 3 files): not a dynamic acquisition" in html
    skipped = job.study["skipped_files"]
    assert f"{len(skipped)} files skipped" in html
    assert "<code>.DS_Store</code>: operating-system clutter." in html


def test_a_long_list_of_skipped_files_is_cut_on_the_page_not_in_the_api(
    client_alice: Client, alice: User
) -> None:
    job = done_job(alice)
    job.study["skipped_files"] = [
        {"path": f"__MACOSX/._IM{i:04d}", "reason": "operating-system clutter"}
        for i in range(study.SKIPPED_SHOWN + 7)
    ]
    job.save(update_fields=["study"])
    html = client_alice.get(f"/series/{job.pk}/").content.decode()
    assert html.count("operating-system clutter.") == study.SKIPPED_SHOWN
    assert "… and 7 more (the API lists them all)." in html
    read = client_alice.get(f"/api/v1/series/{job.pk}/").json()
    assert len(read["study"]["skipped_files"]) == study.SKIPPED_SHOWN + 7


def test_a_series_description_from_the_headers_is_escaped(
    client_alice: Client, alice: User
) -> None:
    job = done_job(alice)
    job.study["phases"][0]["series_description"] = "<script>alert(1)</script>"
    job.save(update_fields=["study"])
    html = client_alice.get(f"/series/{job.pk}/").content.decode()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html


def test_a_failed_job_shows_the_services_message(client_alice: Client, alice: User) -> None:
    job = services.series_job_create(user=alice, upload=io.BytesIO(phantom_zip_bytes()))
    SeriesJob.objects.filter(pk=job.pk).update(
        status="failed", error_code="INVALID_ARGUMENT", error_message="Entry x is not DICOM."
    )
    html = client_alice.get(f"/series/{job.pk}/").content.decode()
    assert "Entry x is not DICOM." in html and "Try again" not in html


def test_bob_gets_404_for_alices_job_on_every_url(client_bob: Client, alice: User) -> None:
    job = done_job(alice)
    for url in (
        f"/series/{job.pk}/",
        f"/series/{job.pk}/progress",
        f"/series/{job.pk}/slices/0.png",
        f"/series/{job.pk}/delete/",
        f"/api/v1/series/{job.pk}/",
    ):
        assert client_bob.get(url).status_code == 404, url
    assert client_bob.post(f"/series/{job.pk}/retry/").status_code == 404
    assert client_bob.post(f"/series/{job.pk}/delete/").status_code == 404
    assert SeriesJob.objects.filter(pk=job.pk).exists()


def test_alice_deletes_her_job_and_its_files(
    client_alice: Client, alice: User, media: Path
) -> None:
    job = done_job(alice)
    answer = client_alice.post(f"/series/{job.pk}/delete/")
    assert answer.status_code == 303 and not SeriesJob.objects.exists()
    assert stored_files(media) == []


def test_a_retryable_failed_job_is_queued_again(client_alice: Client, alice: User) -> None:
    job = services.series_job_create(user=alice, upload=io.BytesIO(phantom_zip_bytes()))
    SeriesJob.objects.filter(pk=job.pk).update(
        status="failed", error_code="UNAVAILABLE", retryable=True
    )
    assert client_alice.post(f"/series/{job.pk}/retry/").status_code == 303
    job.refresh_from_db()
    assert job.status == "queued"


def api_client(user: User) -> Client:
    return Client(headers={"Authorization": f"Token {Token.objects.create(user=user).key}"})


def test_the_api_queues_a_series_with_202_and_reads_it_back(alice: User) -> None:
    api = api_client(alice)
    answer = api.post("/api/v1/series/", {"series": zip_file(phantom_zip_bytes())})
    assert answer.status_code == 202
    body = answer.json()
    assert body["status"] == "queued" and answer["Location"].endswith(
        f"/api/v1/series/{body['id']}/"
    )
    job = SeriesJob.objects.get(pk=body["id"])
    # The upload check's study is there from the start.
    assert body["study"]["selected_by"] == "folders" and len(body["study"]["phases"]) == 4
    services.series_job_record(job=job, result=analysis(16, {3}))
    read = api.get(f"/api/v1/series/{body['id']}/").json()
    assert (read["status"], read["progress"], read["positive_slices"]) == ("done", 1.0, [3])
    slice_3 = read["slices"][3]
    assert {k: slice_3[k] for k in ("index", "positive", "scores", "instance_number")} == {
        "index": 3,
        "positive": True,
        "scores": {"single": 0.9, "scantype": 0.2},
        "instance_number": 97,
    }
    assert slice_3["images"][0] == {
        "phase": "pre",
        "sop_instance_uid": "1.2.826.0.1.0.3",
        "instance_number": 97,
        "position_mm": -37.0,
    }
    assert [image["phase"] for image in slice_3["images"]] == [
        "pre",
        "1st_pass",
        "2nd_pass",
        "3rd_pass",
    ]
    assert read["study"]["phases"][0] == {
        "phase": "pre",
        "series_instance_uid": "1.2.826.0.1.3680043.8.498.1.3",
        "series_description": "ax dyn pre",
        "series_number": 3,
        "temporal_position": None,
        "image_count": 16,
    }
    assert read["study"]["unused_series"][0]["reason"] == "a localiser"
    assert read["study"]["skipped_files"] == [{"path": "case/DICOMDIR", "reason": "a DICOMDIR"}]
    assert read["demo_model"] and "not for clinical use" in read["notice"]


def test_the_api_shows_a_series_queued_unchecked_with_a_null_study(
    alice: User, settings: Any
) -> None:
    settings.GATEWAY_ADDR = f"127.0.0.1:{free_port()}"
    answer = api_client(alice).post("/api/v1/series/", {"series": zip_file(phantom_zip_bytes())})
    assert answer.status_code == 202
    assert (answer.json()["status"], answer.json()["study"]) == ("queued", None)


def test_the_api_refuses_a_non_zip_with_no_row(alice: User, media: Path) -> None:
    answer = api_client(alice).post("/api/v1/series/", {"series": zip_file(b"nope")})
    assert answer.status_code == 400
    assert json.loads(answer.content)["error"]["message"].startswith("The file is not a zip")
    assert SeriesJob.objects.count() == 0 and stored_files(media) == []


def test_the_api_wants_credentials(client: Client) -> None:
    assert client.post("/api/v1/series/", {}).status_code == 401
