"""The labelling page: label a folder of captchas by keyboard, with a model's suggestions, trained as you go.

    python ocr_captcha.py --label DIR [--model M] [--port P] [--review REPORT.json ...]

`make_router(session)` is a FastAPI router that serves the page, its assets and its API under
/label; `create_app` adds it to the reading service's app (one application: /read, /docs and
/health as in `service`, reading with --model when one is given). TensorFlow-free: suggestions are read in
a worker thread through ONNX (a Keras model's export, made once by a subprocess), and training
runs in a subprocess (`captcha_reader.label_training`). Every answer is
in labels.csv (see `label_loop`) before the server says it is saved.
"""

import collections
import subprocess
import threading
from pathlib import Path
from typing import Callable, Sequence

import uvicorn
from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.responses import FileResponse
from pydantic import BaseModel

from captcha_reader import service
from captcha_reader.base import ModelSpec, UserError, counted, first_line
from captcha_reader.decoding import Reading, TextFormat
from captcha_reader.files import exclusive_lock
from captcha_reader.label_loop import (
    ORDERS,
    PAGE_MODEL,
    WORK_DIR,
    BadAnswer,
    LabelStore,
    ReviewItem,
    TrainingProgress,
    describe_format,
    labels_format,
    onnx_for,
    open_reviews,
    order_queue,
    package_root,
    suggest,
    training_command,
    update_progress,
)
from captcha_reader.labels import LabelRow, images_in
from captcha_reader.readers import open_reader
from captcha_reader.reading import BASE_MODEL, BaseReader, existing_model
from captcha_reader.service import ServiceSettings

PREFIX = "/label"
PAGE_LOCK = "page.lock"  # in the folder's work folder: held while a page serves the folder
STATIC_DIR = Path(__file__).resolve().parent / "static" / "label"
ASSETS = ("label.html", "label.css", "label.js")
LOG_LINES = 8  # the run's last lines, for the page


def find_base_model() -> Path | None:
    """The shipped base model, or None when it is not installed."""
    return BASE_MODEL if BASE_MODEL.is_file() else None


class TrainingBusy(UserError):
    """A training run is going already."""


class Suggester:
    """Reads the waiting images with a model in a worker thread, a batch at a time, off the event loop."""

    def __init__(self, store: LabelStore, work: Path) -> None:
        self.store = store
        self.work = work
        self.suggestions: dict[str, Reading] = {}
        self.problems: dict[str, str] = {}  # why a waiting file could not be read
        self.model: Path | None = None
        self.status = "no model"
        self.done = self.total = 0
        self.generation = 0  # changes whenever new suggestions arrive: the page then refreshes its queue
        self.spec: ModelSpec | None = None  # of the model being read with, once it is loaded
        self.text_format: TextFormat | None = None  # the labels' format the suggestions follow (None: the model's)
        self._lock = threading.RLock()  # follow_labels starts a reading while it holds the lock
        self._token: object | None = None  # the reading in progress; a newer one replaces it
        self._reader: BaseReader | None = None  # the loaded model of the current reading

    def start(self, model: Path) -> None:
        """Read every waiting image with `model`; a later call supersedes a reading in progress."""
        with self._lock:
            self.model, self.status, self.done = model, "preparing the model (an ONNX export, once per model)", 0
            self.spec = self.text_format = self._reader = None
            token = object()
            self._token = token
        threading.Thread(target=self._read_all, args=(model, token), daemon=True).start()

    def read_new(self, names: list[str]) -> None:
        """Images joined the queue: tell the page, and read them with the loaded model (a loading one reads them)."""
        with self._lock:
            self.generation += 1
            reader, token, text_format = self._reader, self._token, self.text_format
            if reader is None:
                return
            self.total, self.status = self.total + len(names), "reading"
        threading.Thread(target=self._read, args=(reader, token, names, text_format), daemon=True).start()

    def _read_all(self, model: Path, token: object) -> None:
        """The worker: load the model, then read the waiting images in the labels' format."""
        try:
            reader = open_reader(onnx_for(model, self.work))
        except UserError as error:
            with self._lock:
                if self._token is token:
                    self.status = f"cannot read suggestions: {error}"
            return
        with self._lock:  # an answer that changes the format after this point starts a new reading
            if self._token is not token:
                return
            self._reader = reader
            self.spec, self.text_format = reader.spec, labels_format(self.store.labels(), reader.spec)
            text_format, names = self.text_format, self.store.waiting()
            self.total, self.status = len(names), "reading"
        self._read(reader, token, names, text_format)

    def _read(self, reader: BaseReader, token: object, names: list[str], text_format: TextFormat | None) -> None:
        """Read `names` batch by batch while `token` is the current reading; "ready" once every image is read."""
        try:
            for batch in suggest(reader, [self.store.folder / name for name in names], text_format):
                with self._lock:
                    if self._token is not token:
                        return
                    self.suggestions.update(batch.readings)
                    self.problems.update(batch.problems)
                    for name in batch.readings:  # a file caught half written reads on a later try
                        self.problems.pop(name, None)
                    for name in batch.problems:
                        self.suggestions.pop(name, None)
                    self.done += len(batch.readings) + len(batch.problems)
                    self.generation += 1
        except Exception as error:  # the thread's end: the runtime failing is shown on the page, not lost in a log
            with self._lock:
                if self._token is token:
                    self.status = f"stopped reading: {first_line(error)}"
            return
        with self._lock:
            if self._token is token and self.done >= self.total:
                self.status = "ready"

    def follow_labels(self) -> None:
        """Read again when the labels' format is no longer the one the suggestions follow."""
        with self._lock:  # a reading still loading its model takes the newest labels itself
            if self.spec is not None and labels_format(self.store.labels(), self.spec) != self.text_format:
                self.start(self.model)

    def info(self) -> dict:
        """Model, status, progress and the format the suggestions follow, for the page."""
        text_format = self.text_format
        return {"model": str(self.model) if self.model else None, "status": self.status, "done": self.done,
                "total": self.total, "generation": self.generation,
                "format": describe_format(text_format) if text_format else None}


class Trainer:
    """One training subprocess at a time, its progress read from its output."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.progress = TrainingProgress()
        self.state = "idle"
        self.log: collections.deque[str] = collections.deque(maxlen=LOG_LINES)
        self.runs = 0
        self._lock = threading.Lock()

    def start(self, command: Callable[[], list[str]], on_success: Callable[[], None]) -> None:
        """Start the command that `command()` makes once no run is going; `on_success()` runs when it exits with 0.

        The command is made only then: making it may write the run's start model, which a run going reads.
        """
        with self._lock:  # two clicks at once start one run
            if self.state == "running":
                raise TrainingBusy("a training run is already going")
            try:
                self.process = subprocess.Popen(command(), cwd=package_root(), stdout=subprocess.PIPE,
                                                stderr=subprocess.STDOUT, text=True, bufsize=1)
            except OSError as error:  # the start model's copy or the process: the next click may try again
                self.state = f"failed to start ({first_line(error)})"
                raise UserError(f"the training run did not start: {first_line(error)}") from None
            self.progress, self.state = TrainingProgress(), "running"
            self.log.clear()
        threading.Thread(target=self._follow, args=(self.process, on_success), daemon=True).start()

    def _follow(self, process: subprocess.Popen, on_success) -> None:
        """Read the run's output until it ends, then record how it ended."""
        for line in process.stdout:
            self.log.append(line.rstrip())
            self.progress = update_progress(self.progress, line)
        status = process.wait()
        self.runs += 1
        self.state = "done" if status == 0 else f"failed (exit status {status})"
        if status == 0:
            on_success()

    def stop(self) -> None:
        """End a run in progress (when the server stops)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()

    def info(self) -> dict:
        """State, epoch and validation accuracy for the page."""
        return {"state": self.state, **self.progress._asdict(), "runs": self.runs, "log": list(self.log)}


class LabellingSession:
    """One folder being labelled: its answers, the model in the loop, its training and review queues."""

    def __init__(self, folder: str | Path, model: str | Path | None = None, reviews: Sequence[str | Path] = ()) -> None:
        given = existing_model(model) if model else None  # a wrong path stops here, before anything is written
        self.store = LabelStore(folder)
        self.reviews_from = list(reviews)
        self.reviews()  # a missing or malformed report stops here, before anything is written
        # Reviewing a folder named by its labels must keep those labels: only labelling marks new files as waiting.
        self.newly_waiting = 0 if self.reviews_from else self.store.open_for_labelling()
        self.work = self.store.folder / WORK_DIR
        self.own_model = self.work / PAGE_MODEL
        self.suggester = Suggester(self.store, self.work)
        self.trainer = Trainer()
        start = given or (self.own_model if self.own_model.is_file() else find_base_model())
        self.model = start
        if start is not None:
            self.suggester.start(start)

    def take_new_images(self) -> None:
        """Images added to the folder since it was opened wait for a label (in review, file names are the labels).

        The page hears of them through the suggestions' generation, and the model reads them.
        """
        if self.reviews_from:
            return
        new = self.store.take_new_images()
        if new:
            self.suggester.read_new(new)

    def train(self) -> None:
        """Train the folder's model on its labelled images (fine-tuning the current model), then re-suggest."""
        self.take_new_images()  # training lists the folder itself: a new image must not train under its file name
        labelled = len(self.store.labelled())
        if labelled < 2:
            raise BadAnswer("label a few images first")
        self.work.mkdir(exist_ok=True)
        init_from = self.model if self.model is not None and self.model.suffix == ".keras" else None
        self.trainer.start(lambda: training_command(self.store.folder, self.own_model, init_from, labelled,
                                                    new_images_wait=not self.reviews_from), self._trained)

    def _trained(self) -> None:
        """Switch to the new model and read the waiting images with it."""
        self.model = self.own_model
        self.suggester.start(self.own_model)

    def queue(self, order: str) -> list[dict]:
        """The waiting images in `order`, with their suggestions."""
        suggestions, problems = dict(self.suggester.suggestions), dict(self.suggester.problems)
        return [{"name": name, "suggestion": suggestions[name].text if name in suggestions else "",
                 "confidence": suggestions[name].confidence if name in suggestions else None,
                 "char_confidences": list(suggestions[name].char_confidences) if name in suggestions else [],
                 "problem": problems.get(name)}
                for name in order_queue(self.store.waiting(), suggestions, order)]

    def answer(self, name: str, label: str, note: str) -> LabelRow:
        """Record an answer; a label for a file the model could not read is refused (it can only be unreadable)."""
        if label.strip() and name in self.suggester.problems:
            raise BadAnswer(f"{self.suggester.problems[name]}: it cannot be trained on; mark it unreadable (Alt+U)")
        return self.store.answer(name, label, note)

    def reviews(self) -> list[ReviewItem]:
        """Review items still to decide."""
        return open_reviews(self.store, self.reviews_from)

    def review_count(self) -> int | None:
        """How many review items are still to decide; None when a report cannot be read (the review queue says why)."""
        try:
            return len(self.reviews())
        except UserError:
            return None

    def state(self) -> dict:
        """Everything the page shows besides the queue (which it reloads when images join it)."""
        self.take_new_images()
        return {"folder": str(self.store.folder), "counts": self.store.counts(), "suggestions": self.suggester.info(),
                "training": self.trainer.info(), "orders": ORDERS, "review_count": self.review_count(),
                "model_file": str(self.own_model) if self.own_model.is_file() else None}


class Answer(BaseModel):
    """An answer from the page: a label, or "" with the note `unreadable`, or a previous state (undo)."""

    name: str
    label: str = ""
    note: str = ""


def make_router(session: LabellingSession) -> APIRouter:
    """The page, its assets and its API, under /label."""
    router = APIRouter(prefix=PREFIX)

    @router.get("/", include_in_schema=False)
    def page() -> FileResponse:
        """The labelling page."""
        return FileResponse(STATIC_DIR / "label.html", headers={"Cache-Control": "no-store"})

    @router.get("/static/{asset}", include_in_schema=False)
    def asset(asset: str) -> FileResponse:
        """One of the page's own script and style files."""
        if asset not in ASSETS:
            raise HTTPException(404, "no such file")
        return FileResponse(STATIC_DIR / asset, headers={"Cache-Control": "no-store"})

    @router.get("/image/{name}")
    def image(name: str) -> FileResponse:
        """An image of the folder, by its file name."""
        if not session.store.is_image(name):
            raise HTTPException(404, "no such image")
        return FileResponse(session.store.folder / name, headers={"Cache-Control": "max-age=3600"})

    @router.get("/api/state")
    def state() -> dict:
        """Counts, the model in use and the trainer's progress."""
        return session.state()

    @router.get("/api/queue")
    def queue(order: str = "uncertain") -> dict:
        """The images waiting for a label, in the order asked for, with their suggestions."""
        try:
            items = session.queue(order)
        except UserError as error:  # an unknown order, or the folder gone
            raise HTTPException(400, str(error)) from None
        return {"items": items, "generation": session.suggester.generation, "counts": session.store.counts()}

    @router.get("/api/reviews")
    def reviews() -> dict:
        """The review queue: audit suspects and evaluation misreads."""
        try:
            return {"items": [item._asdict() for item in session.reviews()]}
        except UserError as error:
            raise HTTPException(400, str(error)) from None

    @router.post("/api/answer")
    def answer(answer: Answer) -> dict:
        """Append the answer to labels.csv (synced to disk) before replying."""
        try:
            row = session.answer(answer.name, answer.label, answer.note)
        except UserError as error:
            raise HTTPException(400, str(error)) from None
        session.suggester.follow_labels()
        return {"saved": row._asdict(), "counts": session.store.counts()}

    @router.post("/api/train")
    def train() -> dict:
        """Start training on the labelled images in the background."""
        try:
            session.train()
        except TrainingBusy as error:
            raise HTTPException(409, str(error)) from None
        except UserError as error:
            raise HTTPException(400, str(error)) from None
        return session.trainer.info()

    return router


def create_app(session: LabellingSession, reader: BaseReader | None = None,
               settings: ServiceSettings = ServiceSettings()) -> FastAPI:
    """The service's app with the labelling page, reading with `reader` if given; else / leads to the page."""
    return service.create_app(reader, settings, [labelling_page(session)])


def labelling_page(session: LabellingSession) -> service.Page:
    """The labelling page as a page of the service's app; a training run still going stops with the server."""
    return service.Page(make_router(session), f"{PREFIX}/", session.trainer.stop)


def serve(folder: str | Path, model: str | Path | None, port: int, reviews: Sequence[str | Path] = ()) -> None:
    """Open the folder and serve the page on 127.0.0.1 until Ctrl-C."""
    service.check_port_free("127.0.0.1", port)
    images_in(folder, " to label")  # a folder without images is left untouched: no work folder, no lock
    # Two pages on one folder would each miss the other's answers and train into the same model.
    with exclusive_lock(Path(folder) / WORK_DIR / PAGE_LOCK, f"{folder}: another labelling page has this folder open"):
        serve_session(LabellingSession(folder, model, reviews), model, port)


def serve_session(session: LabellingSession, model: str | Path | None, port: int) -> None:
    """Serve the page of an open session on 127.0.0.1 until Ctrl-C."""
    # The model named on the command line also answers /read, through the suggestions' ONNX export: no TensorFlow here.
    reader = open_reader(onnx_for(session.model, session.work)) if model else None
    counts = session.store.counts()
    suggesting = session.model or "no model (none given, no base model shipped)"
    print(f"{session.store.folder}: {counts['total']} images, {counts['labelled']} labelled,"
          f" {counts['waiting']} waiting; suggestions from {suggesting}")
    if session.newly_waiting:
        print(f"{counted(session.newly_waiting, 'image')} had no row in labels.csv and now wait for a label: the page"
              " never takes a file name for a label (if these names are the labels, stop now and delete their rows"
              " from labels.csv)")
    print(f"open http://127.0.0.1:{port}{PREFIX}/  (Ctrl-C stops; every answer is already saved)", flush=True)
    uvicorn.run(create_app(session, reader), host="127.0.0.1", port=port, log_level="warning")
