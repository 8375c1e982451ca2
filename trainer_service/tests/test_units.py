"""The trainer's plain-Python pieces: names, the frame slot, demo images, the store, settings."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from PIL import Image

from gateway.registry import RouteError
from gateway.registry import validate_disease as gateway_validate_disease
from servicekit import pagination
from servicekit.errors import InvalidArgument
from servicekit.settings import SettingsError
from trainer_service import names
from trainer_service.demo_images import DEMO_LABELS, demo_images
from trainer_service.predict import LatestFrameSlot
from trainer_service.settings import Settings, retired_variables
from trainer_service.store import Store


@pytest.mark.parametrize(
    "labels",
    [["only"], [f"l{i}" for i in range(11)], ["a", "a"], ["a", " a "], ["a", ""], ["a", "x/y"],
     ["a", "x" * 41]],
)  # fmt: skip
def test_bad_label_lists_are_refused(labels: list[str]) -> None:
    with pytest.raises(InvalidArgument):
        names.validate_labels(labels)


def test_labels_are_trimmed_and_may_hold_spaces_dashes_and_underscores() -> None:
    assert names.validate_labels([" thumbs up ", "no-hand_2"]) == ("thumbs up", "no-hand_2")


@pytest.mark.parametrize(
    "disease", ["shapes", "a", "my-model-2", "Skin", "2x", "-a", "a_b", "", "a" * 64, "a" * 63]
)
def test_the_disease_rule_is_the_gateways(disease: str) -> None:
    try:
        gateway_validate_disease(disease)
        gateway_ok = True
    except RouteError:
        gateway_ok = False
    try:
        names.validate_disease(disease)
        trainer_ok = True
    except InvalidArgument:
        trainer_ok = False
    assert trainer_ok == gateway_ok


def test_train_params_fill_zeros_with_defaults_and_check_ranges() -> None:
    params = names.TrainParams.from_request(
        epochs=0, batch_size=0, learning_rate=0, validation_split=0, seed=3
    )
    assert params == names.TrainParams(seed=3)
    for bad in ({"epochs": 201}, {"batch_size": 300}, {"learning_rate": 2.0},
                {"validation_split": 0.7}, {"learning_rate": float("nan")}):  # fmt: skip
        arguments = {"epochs": 1, "batch_size": 1, "learning_rate": 0.1, "validation_split": 0.2}
        with pytest.raises(InvalidArgument):
            names.TrainParams.from_request(**{**arguments, **bad}, seed=0)  # type: ignore[arg-type]


def test_resource_names_parse_back() -> None:
    project_id, job_id = names.new_id(), names.new_id()
    assert names.parse_project_name(names.project_name(project_id)) == project_id
    assert names.parse_job_name(names.job_name(project_id, job_id)) == (project_id, job_id)
    with pytest.raises(InvalidArgument):
        names.parse_project_name("projects/../etc")


async def test_the_slot_keeps_only_the_newest_frame_and_counts_the_drops() -> None:
    slot: LatestFrameSlot[int] = LatestFrameSlot()
    for frame in range(5):
        slot.put(frame)
    assert await slot.take() == (4, 4)
    waiter = asyncio.create_task(slot.take())
    await asyncio.sleep(0)
    slot.put(5)
    assert await waiter == (5, 0)
    slot.put(6)
    slot.close()
    assert await slot.take() == (6, 0)
    assert await slot.take() is None


def test_demo_images_are_deterministic_jpegs_of_the_asked_size() -> None:
    first = demo_images(2, 3, seed=5, size=80)
    assert first == demo_images(2, 3, seed=5, size=80)
    assert first != demo_images(2, 3, seed=6, size=80)
    assert demo_images(0, 3, seed=5) != demo_images(1, 3, seed=5)
    image = Image.open(io.BytesIO(first[0]))
    assert (image.format, image.size) == ("JPEG", (80, 80))
    assert DEMO_LABELS == ("circle", "square", "stripes")


def test_an_upload_that_is_discarded_leaves_the_project_unchanged(tmp_path: Path) -> None:
    store = Store(tmp_path)
    project = store.create_project("p", ("a", "b"))
    upload = store.begin_upload(project.project_id, max_per_label=10)
    upload.add(0, demo_images(0, 1, seed=1)[0], "JPEG")
    upload.discard()
    assert store.example_counts(project.project_id) == (0, 0)
    upload = store.begin_upload(project.project_id, max_per_label=10)
    image = demo_images(0, 1, seed=1)[0]
    upload.add(0, image, "JPEG")
    upload.add(0, image, "JPEG")  # the same bytes twice are one example
    assert upload.commit() == (1, (1, 0))
    assert not list(store.staging_dir.iterdir())


def test_settings_have_the_documented_defaults_and_name_a_bad_variable() -> None:
    settings = Settings.from_env({})
    assert settings.server.port == 50063
    assert settings.data_dir == Path("var/trainer").absolute()
    assert settings.max_concurrent_trainings == 1
    assert settings.image_limits.max_bytes == 4 * 1024 * 1024
    with pytest.raises(SettingsError, match="TRAINER_IMAGE_SIZE"):
        Settings.from_env({"TRAINER_IMAGE_SIZE": "big"})


def test_the_settings_of_registering_at_the_gateway_are_retired_and_named() -> None:
    # The trainer calls no gateway any more; an old deployment's variables are ignored.
    old = {"TRAINER_GATEWAY_ADDR": "nope", "TRAINER_REREGISTER_SECONDS": "-1"}
    assert Settings.from_env(old) == Settings.from_env({})
    assert retired_variables(old) == ["TRAINER_GATEWAY_ADDR", "TRAINER_REREGISTER_SECONDS"]
    assert retired_variables({"TRAINER_PORT": "1"}) == []


def test_pages_follow_the_last_key_and_end_with_an_empty_token() -> None:
    items = ["a", "b", "c", "d", "e"]
    pages, token = [], ""
    while True:
        chunk, token = pagination.page(items, str, 2, token)
        pages.append(chunk)
        if not token:
            break
        assert "c" not in token  # opaque, not the key in clear
    assert pages == [["a", "b"], ["c", "d"], ["e"]]
    # A key removed between two pages hides nothing else and repeats nothing.
    first, token = pagination.page(items, str, 2, "")
    rest, _ = pagination.page(["a", "c", "d", "e"], str, 10, token)
    assert (first, rest) == (["a", "b"], ["c", "d", "e"])
    assert pagination.page(items, str, 5, "") == (items, "")
    assert pagination.page([], str, 0, "") == ([], "")


def test_page_sizes_default_cap_and_refuse_negatives() -> None:
    assert pagination.page_size(0) == pagination.DEFAULT_PAGE_SIZE == 100
    assert pagination.page_size(5000) == pagination.MAX_PAGE_SIZE == 1000
    assert pagination.page_size(7) == 7
    with pytest.raises(InvalidArgument, match="page_size"):
        pagination.page_size(-1)


@pytest.mark.parametrize(
    "token", ["not base64!", "aGVsbG8", pagination.page_token("")[:-2], "djE6"]
)
def test_a_token_this_service_did_not_make_is_invalid_argument(token: str) -> None:
    with pytest.raises(InvalidArgument, match="page_token"):
        pagination.page(["a"], str, 1, token)


def test_projects_are_listed_newest_first_page_by_page_with_each_labels_count() -> None:
    from medimg.v1 import trainer_service_pb2 as pb

    from trainer_service.rpc_projects import list_projects
    from trainer_service.service import ProjectView
    from trainer_service.store import Project

    # Two projects created in the same microsecond: their ids order them.
    times = {"p1": 100.0, "p2": 300.0, "p3": 200.0, "p4": 300.0, "p5": 50.0}
    views = [
        ProjectView(Project(pid, pid.upper(), ("cat", "dog"), created), (index, 2 * index))
        for index, (pid, created) in enumerate(times.items())
    ]
    pages, token = [], ""
    while True:
        response = list_projects(views, pb.ListProjectsRequest(page_size=2, page_token=token))
        pages.append([project.name for project in response.projects])
        token = response.next_page_token
        if not token:
            break
    assert pages == [
        ["projects/p2", "projects/p4"],
        ["projects/p3", "projects/p1"],
        ["projects/p5"],
    ]
    first = list_projects(views, pb.ListProjectsRequest()).projects[-1]  # p5: counts (4, 8)
    assert [(c.label, c.example_count) for c in first.label_counts] == [("cat", 4), ("dog", 8)]
    assert list(first.example_counts) == [4, 8]  # the deprecated copy, for older callers
    with pytest.raises(InvalidArgument, match="page_token"):
        list_projects(views, pb.ListProjectsRequest(page_token="elsewhere"))
