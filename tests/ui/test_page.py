"""The upload page at `/`, in headless Chromium against a running API with the fixture model:
what a person sees after choosing images, and what they read when something is wrong."""

from __future__ import annotations

import io
import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.fixtures.synthetic import CLASS_NAMES, HELD_OUT_SEED_START, match, render_scene
from tests.support.api_app import ADMIN_KEY, bearer
from tests.support.browser import STORED_KEY
from tests.support.images import frame_of, oriented, scene_file
from tests.support.live_api import StartApi, api_jobs
from tests.support.paths import ROOT

if TYPE_CHECKING:
    from playwright.sync_api import FloatRect, Locator, Page

ARTIFACTS = ROOT / "test-artifacts"
LABEL = re.compile(r"^(circle|square|triangle) (\d{1,3})%$")
NEEDS_KEY = "This service needs an API key. Enter yours; this browser keeps it."
NOT_ACCEPTED = "The API key was not accepted: it is wrong or has been revoked. Enter a valid key."
BUSY = {"error": {"code": "unavailable", "message": "Too many jobs waiting.", "details": {}}}


def text(locator: Locator) -> str:
    """The element's textContent (Playwright types it optional; an element always has one)."""
    found = locator.text_content()
    assert found is not None
    return found


def bounds(locator: Locator) -> FloatRect:
    """Where the element is on the screen (None only for an element that is not shown)."""
    box = locator.bounding_box()
    assert box is not None
    return box


def drawn_boxes(card: Locator) -> list[dict[str, Any]]:
    """Each box as drawn on screen, mapped back to pixels of the original image."""
    img = card.locator("img")
    shown = bounds(img)
    scale = img.evaluate("img => img.naturalWidth") / shown["width"]
    boxes = []
    for group in card.locator("g").all():
        rect = bounds(group.locator("rect"))
        left, top = rect["x"] - shown["x"], rect["y"] - shown["y"]
        box = tuple(v * scale for v in (left, top, left + rect["width"], top + rect["height"]))
        label = text(group.locator("text")).strip()
        boxes.append({"class_name": group.get_attribute("data-class"), "label": label, "box": box})
    return boxes


def watch_for_errors(page: Page) -> list[str]:
    """Script errors and CSP violations the page causes, to assert there are none."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    return errors


def watch_api_calls(page: Page) -> list[dict[str, Any]]:
    """The page's requests to /v1: path, the Authorization header sent, the answer's status."""
    calls: list[dict[str, Any]] = []

    def answered(response: Any) -> None:
        path = httpx.URL(response.url).path
        if path.startswith("/v1/"):
            auth = response.request.headers.get("authorization")
            calls.append({"path": path, "auth": auth, "status": response.status})

    page.on("response", answered)
    return calls


def choose(page: Page, url: str, files: Path | list[Path]) -> None:
    page.goto(url)
    page.locator("input[type=file]").set_input_files(files)


def stored_key(page: Page) -> str | None:
    key: str | None = page.evaluate(f"localStorage.getItem('{STORED_KEY}')")
    return key


@pytest.mark.slow
def test_two_uploads_show_one_labelled_box_per_object(
    page: Page, start_api: StartApi, tmp_path: Path
) -> None:
    url = start_api()
    truths = {
        # Wider than the page: shown scaled down, so the overlay must scale its boxes too.
        "shapes-wide.png": scene_file(tmp_path / "shapes-wide.png", 6121, width=1200, height=800),
        "shapes.jpg": scene_file(tmp_path / "shapes.jpg", 6134),
    }
    errors = watch_for_errors(page)
    choose(page, url, [tmp_path / name for name in truths])

    done = page.locator("article[data-status=succeeded]")
    done.nth(1).wait_for(timeout=180_000)
    page.locator("tbody tr", has_text="succeeded").nth(1).wait_for()
    assert page.locator("article").count() == 2
    jobs = {job["filename"]: job for job in api_jobs(url)}

    for card in done.all():
        name = text(card.locator("b"))
        truth, job = truths[name], jobs[name]
        boxes = drawn_boxes(card)
        assert len(boxes) == len(truth), boxes
        assert card.locator("span").text_content() == f"Done: {len(truth)} object(s)"
        assert sorted(b["class_name"] for b in boxes) == sorted(t.class_name for t in truth)
        for box in boxes:
            label = LABEL.match(box["label"])
            assert label, box["label"]
            assert label[1] == box["class_name"]
        detections = [(CLASS_NAMES.index(b["class_name"]), b["box"]) for b in boxes]
        assert match(truth, detections)["ok"], (truth, boxes)
        # Drawn where the API says, to the pixel, with the confidence it gives.
        for box, d in zip(boxes, job["detections"], strict=True):
            api_box = [d["box"][k] for k in ("x1", "y1", "x2", "y2")]
            assert box["box"] == pytest.approx(api_box, abs=1.5)
            assert box["label"] == f"{d['class_name']} {round(d['confidence'] * 100)}%"
        overlay, image = card.locator("svg").bounding_box(), card.locator("img").bounding_box()
        assert overlay == pytest.approx(image, abs=0.5)

    wide = done.filter(has_text="shapes-wide.png").locator("img")
    assert bounds(wide)["width"] < 1200  # really shown scaled down
    assert errors == []

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "upload-page.png"
    page.screenshot(path=shot, full_page=True)
    if os.environ.get("UPDATE_SCREENSHOT"):  # the README's picture: refresh it on purpose
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copyfile(shot, ROOT / "docs" / "screenshot.png")


def drawn_in_image_coordinates(card: Locator) -> list[tuple[int, tuple[float, ...]]]:
    """Each box as the SVG says it, in its viewBox's units: pixels of the image."""
    boxes: list[tuple[int, tuple[float, ...]]] = []
    for group in card.locator("g").all():
        rect = group.locator("rect")
        x, y, w, h = (float(rect.get_attribute(a) or "nan") for a in ("x", "y", "width", "height"))
        boxes.append((CLASS_NAMES.index(group.get_attribute("data-class")), (x, y, x + w, y + h)))
    return boxes


@pytest.mark.slow
def test_rotated_photos_have_their_boxes_on_the_objects(
    page: Page, start_api: StartApi, tmp_path: Path
) -> None:
    """Phone photos: stored turned, with the EXIF orientation that shows them upright. The
    detections are in the upright frame (OpenCV's), and so are the picture the page shows
    and its boxes, whatever the browser makes of the EXIF itself (Chromium ignores it in
    WebP files: the page turns the picture itself)."""
    url = start_api()
    photos = {  # name: format, orientation (None: no EXIF), size of the upright scene
        "plain.jpg": ("JPEG", None, (560, 400)),
        "upside-down.jpg": ("JPEG", 3, (560, 400)),
        "phone-held-right.jpg": ("JPEG", 6, (1200, 800)),  # shown scaled down as well
        "phone-held-left.jpg": ("JPEG", 8, (560, 400)),
        "phone.webp": ("WEBP", 6, (560, 400)),
        "mirrored.png": ("PNG", 7, (480, 360)),
    }
    scenes = {}
    for k, (name, (fmt, orientation, (width, height))) in enumerate(photos.items()):
        image, truth = render_scene(HELD_OUT_SEED_START + 7400 + k, width=width, height=height)
        (tmp_path / name).write_bytes(oriented(image, orientation, fmt))
        scenes[name] = (image, truth)
    errors = watch_for_errors(page)
    choose(page, url, [tmp_path / name for name in photos])

    done = page.locator("article[data-status=succeeded]")
    done.nth(len(photos) - 1).wait_for(timeout=180_000)
    jobs = {job["filename"]: job for job in api_jobs(url)}
    for card in done.all():
        name = text(card.locator("b"))
        (image, truth), job = scenes[name], jobs[name]
        width, height = image.size
        assert (job["image_width"], job["image_height"]) == (width, height), name
        assert card.locator("svg").get_attribute("viewBox") == f"0 0 {width} {height}"

        # The boxes the SVG holds lie on the objects of the upright scene...
        in_image = drawn_in_image_coordinates(card)
        assert match(truth, in_image)["ok"], (name, truth, in_image)
        # ... and so do they where they are seen on the screen.
        on_screen = [(CLASS_NAMES.index(b["class_name"]), b["box"]) for b in drawn_boxes(card)]
        assert match(truth, on_screen)["ok"], (name, truth, on_screen)

        img = card.locator("img")
        shown = bounds(img)
        assert img.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [width, height]
        assert shown["width"] / shown["height"] == pytest.approx(width / height, rel=0.01)
        assert card.locator("svg").bounding_box() == pytest.approx(shown, abs=0.5)
        # The picture under the boxes is the upright scene, not the stored pixels.
        card.locator("svg").evaluate("svg => { svg.style.visibility = 'hidden'; }")
        picture = Image.open(io.BytesIO(img.screenshot()))
        card.locator("svg").evaluate("svg => { svg.style.visibility = ''; }")
        assert frame_of(picture, image) == 1, name

    wide = done.filter(has_text="phone-held-right.jpg").locator("img")
    assert bounds(wide)["width"] < 1200  # really shown scaled down
    assert errors == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "upload-page-rotated.png", full_page=True)


def test_refused_files_are_explained_in_words(
    page: Page, start_api: StartApi, tmp_path: Path
) -> None:
    url = start_api(max_upload_bytes=2 * 1024 * 1024)
    (tmp_path / "notes.txt").write_text("not a picture")
    Image.new("RGB", (8, 8), "red").save(tmp_path / "anim.gif")
    (tmp_path / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(3 * 1024 * 1024))
    expected = {
        "notes.txt": "The file is not an image; upload JPEG, PNG and WebP.",
        "anim.gif": "GIF images are not supported; upload JPEG, PNG and WebP.",
        "huge.png": "Each file may have at most 2.0 MB. Try a smaller image.",
    }
    errors = watch_for_errors(page)
    choose(page, url, [tmp_path / name for name in expected])

    refused = page.locator("article[data-status=refused]")
    refused.nth(2).wait_for()
    shown = {
        card.locator("b").text_content(): card.locator("p").text_content() for card in refused.all()
    }
    assert shown == expected
    assert all(card.locator("span").text_content() == "Not accepted" for card in refused.all())
    assert page.locator("tbody tr").count() == 0  # nothing was kept
    assert errors == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "upload-page-refused.png", full_page=True)


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        pytest.param(
            lambda route: route.fulfill(status=503, json=BUSY),
            "Too many jobs waiting. The service is busy: please try again in a minute.",
            id="busy",
        ),
        pytest.param(
            lambda route: route.abort("connectionrefused"),
            "Cannot reach the server. Is it running?",
            id="unreachable",
        ),
        pytest.param(
            lambda route: route.fulfill(status=502, body="<html>Bad gateway</html>"),
            "The server answered 502.",
            id="not-the-api",
        ),
    ],
)
def test_a_failed_request_is_explained(
    page: Page, start_api: StartApi, tmp_path: Path, answer: Any, words: str
) -> None:
    url = start_api(workers_enabled=False)
    scene_file(tmp_path / "a.png", 6104)
    page.route("**/v1/uploads", answer)
    choose(page, url, tmp_path / "a.png")
    card = page.locator("article[data-status=refused]")
    card.wait_for()
    assert card.locator("p").text_content() == words


def test_page_is_served_with_a_strict_content_security_policy(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert re.search(r"script-src 'sha256-[A-Za-z0-9+/=]{44}';", policy)
    assert re.search(r"style-src 'sha256-[A-Za-z0-9+/=]{44}';", policy)
    assert "img-src 'self' blob:;" in policy  # the pictures, fetched with the key
    assert "frame-ancestors 'none'" in policy
    assert "unsafe" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "/" not in client.get("/openapi.json").json()["paths"]


def test_dropped_images_are_uploaded(page: Page, start_api: StartApi, tmp_path: Path) -> None:
    url = start_api(workers_enabled=False)  # the job stays queued: this is about the drop
    scene_file(tmp_path / "dropped.png", 6128)
    page.goto(url)
    page.locator("label").evaluate(
        """(zone, [name, bytes]) => {
            const data = new DataTransfer();
            data.items.add(new File([new Uint8Array(bytes)], name, {type: 'image/png'}));
            zone.dispatchEvent(new DragEvent('drop', {dataTransfer: data, bubbles: true}));
        }""",
        ["dropped.png", list((tmp_path / "dropped.png").read_bytes())],
    )
    card = page.locator("article[data-status=queued]")
    card.wait_for()
    assert card.locator("b").text_content() == "dropped.png"
    assert card.locator("span").text_content() == "Waiting…"
    (job,) = api_jobs(url)
    assert job["filename"] == "dropped.png"


def test_a_failed_job_shows_its_reason_also_from_the_recent_list(
    page: Page, start_api: StartApi, tmp_path: Path
) -> None:
    url = start_api(model=str(ROOT / "no-such-model.pt"))
    scene_file(tmp_path / "a.png", 6140)
    choose(page, url, tmp_path / "a.png")
    failed = page.locator("article[data-status=failed]")
    failed.wait_for(timeout=60_000)
    reason = text(failed.locator("p"))
    assert reason.startswith("Detection failed: ")
    assert "no-such-model.pt" in reason

    page.reload()  # a new visit: the job is in the recent list; a click shows it again
    row = page.locator("tbody tr")
    row.wait_for()
    assert row.locator("td").all_text_contents()[1:] == ["a.png", "failed", ""]
    row.click()
    failed.wait_for()
    assert failed.locator("p").text_content() == reason


@pytest.mark.slow
def test_the_page_asks_for_a_key_once_and_keeps_it(
    keyless_page: Page, start_api: StartApi, tmp_path: Path
) -> None:
    page, url = keyless_page, start_api()
    created = httpx.post(f"{url}/v1/keys", headers=bearer(ADMIN_KEY), json={"name": "alice"})
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    truth = scene_file(tmp_path / "shapes.jpg", 6134)
    errors, calls = watch_for_errors(page), watch_api_calls(page)
    page.goto(url)

    form, zone = page.locator("form"), page.locator("label")
    form.wait_for()
    assert form.locator("p").text_content() == NEEDS_KEY
    assert zone.is_hidden()  # nothing to upload with until a key is accepted

    form.locator("input").fill("yk_not-a-key")
    form.locator("button").click()
    form.locator("p", has_text=NOT_ACCEPTED).wait_for()
    assert form.locator("p").text_content() == NOT_ACCEPTED
    assert zone.is_hidden()
    assert stored_key(page) is None  # the wrong key is not kept
    assert page.locator("article").count() == 0
    assert api_jobs(url) == []
    assert [c for c in calls if c["path"] == "/v1/uploads"] == []
    assert calls[-1] == {"path": "/v1/jobs", "auth": "Bearer yk_not-a-key", "status": 401}

    form.locator("input").fill(key)
    form.locator("input").press("Enter")
    zone.wait_for()
    assert form.is_hidden()
    entered = len(calls)
    zone.locator("input").set_input_files(tmp_path / "shapes.jpg")
    done = page.locator("article[data-status=succeeded]")
    done.wait_for(timeout=180_000)
    page.locator("tbody tr", has_text="succeeded").wait_for()
    boxes = drawn_boxes(done)
    assert done.locator("span").text_content() == f"Done: {len(truth)} object(s)"
    detections = [(CLASS_NAMES.index(b["class_name"]), b["box"]) for b in boxes]
    assert match(truth, detections)["ok"], (truth, boxes)
    later = calls[entered:]
    assert {c["path"].rsplit("/", 1)[-1] for c in later} >= {"uploads", "image", "jobs"}
    assert all(c["auth"] == f"Bearer {key}" and c["status"] in (200, 202) for c in later), later
    assert [job["filename"] for job in api_jobs(url)] == ["shapes.jpg"]

    page.reload()  # a new visit: the key is still there, nothing is asked
    page.locator("tbody tr", has_text="shapes.jpg").wait_for()
    assert form.is_hidden()
    assert zone.is_visible()
    assert stored_key(page) == key

    page.get_by_role("button", name="Forget the API key").click()  # e.g. to use another one
    form.locator("p", has_text=NEEDS_KEY).wait_for()
    assert stored_key(page) is None
    assert zone.is_hidden()
    assert errors == []


def test_with_keys_off_the_page_never_asks_for_one(
    keyless_page: Page, start_api: StartApi, tmp_path: Path
) -> None:
    page, url = keyless_page, start_api(require_api_keys=False, workers_enabled=False)
    scene_file(tmp_path / "a.png", 6104)
    errors, calls = watch_for_errors(page), watch_api_calls(page)
    with page.expect_response("**/v1/jobs?limit=20") as listed:
        page.goto(url)
    assert listed.value.status == 200
    page.locator("input[type=file]").set_input_files(tmp_path / "a.png")
    card = page.locator("article[data-status=queued]")
    card.wait_for()
    assert card.locator("b").text_content() == "a.png"
    assert page.locator("form").is_hidden()
    assert page.get_by_role("button", name="Forget the API key").is_hidden()  # none to forget
    assert stored_key(page) is None
    assert {c["path"] for c in calls} >= {"/v1/jobs", "/v1/uploads"}
    assert all(c["auth"] is None and c["status"] in (200, 202) for c in calls), calls
    assert errors == []


@pytest.mark.slow
def test_the_picture_is_fetched_with_the_key_and_shown_from_a_blob_url(
    page: Page, start_api: StartApi, tmp_path: Path
) -> None:
    url = start_api()
    scene_file(tmp_path / "a.png", 6121, width=640, height=480)
    errors, calls = watch_for_errors(page), watch_api_calls(page)
    choose(page, url, tmp_path / "a.png")
    done = page.locator("article[data-status=succeeded]")
    done.wait_for(timeout=180_000)

    (job,) = api_jobs(url)
    image = f"/v1/jobs/{job['id']}/image"
    assert httpx.get(url + image).status_code == 401  # why an <img src> cannot load it
    img = done.locator("img")
    assert (img.get_attribute("src") or "").startswith("blob:")
    assert img.evaluate("img => img.naturalWidth") == job["image_width"] == 640
    assert [c for c in calls if c["path"] == image] == [
        {"path": image, "auth": f"Bearer {ADMIN_KEY}", "status": 200}
    ]
    # Shown, then let go: the blob URL is revoked and loads nothing any more.
    gone = img.evaluate(
        """img => new Promise((done) => {
            const probe = new Image();
            probe.onload = () => done(false);
            probe.onerror = () => done(true);
            probe.src = img.src;
        })"""
    )
    assert gone
    assert errors == []
