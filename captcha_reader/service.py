"""The reading service: a FastAPI app that reads captchas sent over HTTP, in batches.

    python -m captcha_reader.service --model model/ocr_captcha.onnx     # http://127.0.0.1:8000/
    python predict_example.py --serve --model model/ocr_captcha.onnx     # the same

`POST /read` takes images as multipart files or as JSON `{"images": [base64, ...]}` and answers
`{"results": [...]}`: per image, in order, `{"text", "confidence", "char_confidences"}` or `{"error"}`.
Readings have the model's own format (its charset and training label lengths) unless the query asks for
another, as predict_example.py's flags do: `/read?length=4-6&charset=0123456789`, or `/read?greedy=true`.
`GET /model` is what the model knows, `GET /health` is for probes, `/` is a demo page, `/docs` the OpenAPI docs.

Requests that arrive together are read as one batch (`Batcher`: a batch waits up to `max_wait_ms`
for images still being decoded): the network runs in its own thread, once per batch, and each
request's images are decoded in its own format; uploads are decoded in a small pool, so the event
loop keeps accepting.
Every limit is a field of `ServiceSettings`; `create_app(reader, settings)` builds the app, to
which later pages add their own routes and files in `captcha_reader/static/`.
"""

import argparse
import asyncio
import base64
import binascii
import collections
import contextlib
import errno
import gc
import os
import secrets
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Callable, NamedTuple, Sequence

import numpy as np
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from captcha_reader.base import ImageReadError, SettingError, TextFormatError, UserError
from captcha_reader.decoding import TextFormat, decode, decoding_format, requested_format
from captcha_reader.images import describe, read_image
from captcha_reader.readers import open_reader
from captcha_reader.reading import BaseReader, Reading, existing_model, named_model
from captcha_reader.settings import OneLineParser, port_number

DEFAULT_SERVICE_MODEL = "model/ocr_captcha.onnx"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
TOKEN_ENV = "OCR_CAPTCHA_TOKEN"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
STATIC_DIR = Path(__file__).resolve().parent / "static"


def setting(default: object, help_text: str) -> object:
    """A settings field with its command-line help."""
    return field(default=default, metadata={"help": help_text})


@dataclass(frozen=True)
class ServiceSettings:
    """The service's limits and its token; the defaults suit captchas on a small machine."""

    max_body_bytes: int = setting(4 * 2**20, "largest request body, in bytes")
    max_images: int = setting(64, "most images in one request")
    max_pixels: int = setting(2048 * 2048, "largest image (width x height as declared), refused before decoding")
    max_batch: int = setting(64, "most images the network reads at once")
    max_wait_ms: float = setting(5.0, "how long a batch waits for images of requests still being decoded")
    max_queue: int = setting(1024, "images accepted and not yet answered; beyond it requests get 503")
    decode_threads: int = setting(2, "threads that decode and resize uploads")
    retry_after_s: int = setting(1, "the Retry-After header of a 503, in seconds")
    token: str | None = setting(None, "when set, /read and /model need `Authorization: Bearer <token>`")

    def __post_init__(self) -> None:
        """Refuse limits the service cannot run with, naming the setting."""
        for name in (item.name for item in fields(self) if item.name != "token"):
            value = getattr(self, name)
            if value < 0 or (value == 0 and name != "max_wait_ms"):
                raise SettingError(name, f"must be positive, got {value}")
        if self.max_queue < self.max_images:  # else a request of max_images images is refused 503 forever
            raise SettingError("max_queue", f"must hold one request's images (max_images {self.max_images}),"
                                            f" got {self.max_queue}")
        if self.token == "":
            raise SettingError("token", "must not be empty")


class QueueFull(Exception):
    """More images are waiting than the queue holds: the request is answered 503."""


class BodyTooLarge(Exception):
    """A request body over the size limit: answered 413."""


class Decoding(NamedTuple):
    """How a request's images are decoded: format-aware in `text_format` (complete), or greedy."""

    text_format: TextFormat | None
    greedy: bool = False


class Upload(NamedTuple):
    """One image of a request: its name for messages, its bytes, or why it could not even be taken."""

    name: str
    data: bytes
    problem: str = ""


class Batcher:
    """Reads the images of concurrent requests in batches, one batch at a time, in its own thread."""

    def __init__(self, reader: BaseReader, max_batch: int, max_wait_s: float, max_queue: int) -> None:
        self.reader = reader
        self.max_batch, self.max_wait_s, self.max_queue = max_batch, max_wait_s, max_queue
        self.pending: collections.deque = collections.deque()  # (array, decoding, future, arrival time)
        self.admitted = 0
        self.reading = 0  # images in the network now
        self.batches = 0
        self.images_read = 0
        self.largest_batch = 0
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        # One thread: batches run one after another, each using all the runtime's own threads.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="inference")

    async def start(self) -> None:
        """Start reading queued images."""
        self._arrived = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop the loop and the inference thread (requests in flight have been answered by now)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=True)

    @contextlib.contextmanager
    def admission(self, count: int):
        """Hold `count` places in the queue until the block ends; QueueFull when they are not free."""
        if self.admitted + count > self.max_queue:
            raise QueueFull
        self.admitted += count
        try:
            yield
        finally:
            self.admitted -= count

    async def read(self, arrays: list[np.ndarray], decoding: Decoding) -> list[Reading]:
        """Queue preprocessed images and wait for their readings, decoded as `decoding` says."""
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in arrays]
        now = loop.time()
        self.pending.extend((array, decoding, future, now) for array, future in zip(arrays, futures))
        self._arrived.set()
        return list(await asyncio.gather(*futures))

    def incoming(self) -> int:
        """Images accepted and still being decoded: they will join the queue shortly."""
        return self.admitted - len(self.pending) - self.reading

    async def _next_batch(self) -> list[tuple[np.ndarray, Decoding, asyncio.Future]]:
        """Wait for images; then, while more are being decoded, until the batch is full or has waited max_wait_s."""
        loop = asyncio.get_running_loop()
        while not self.pending:
            self._arrived.clear()
            await self._arrived.wait()
        deadline = self.pending[0][3] + self.max_wait_s
        while len(self.pending) < self.max_batch and self.incoming() > 0 and (left := deadline - loop.time()) > 0:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)
        taken = [self.pending.popleft() for _ in range(min(self.max_batch, len(self.pending)))]
        return [(array, decoding, future) for array, decoding, future, _ in taken
                if not future.done()]  # done: its client left

    async def _run(self) -> None:
        """Read batch after batch, off the event loop."""
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            if not batch:
                continue
            self.reading = len(batch)
            try:
                readings = await loop.run_in_executor(self._executor, self.read_batch, batch)
            except Exception as error:  # noqa: BLE001 - the runtime failed: this batch's requests get the error
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            finally:
                self.reading = 0
            self.batches += 1
            self.images_read += len(batch)
            self.largest_batch = max(self.largest_batch, len(batch))
            for (_, _, future), reading in zip(batch, readings):
                if not future.done():
                    future.set_result(reading)

    def read_batch(self, batch: list[tuple[np.ndarray, Decoding, asyncio.Future]]) -> list[Reading]:
        """Run the network once over the batch, then decode each image as its request asked."""
        logits = self.reader.logits(np.stack([array for array, _, _ in batch]))
        readings: list[Reading | None] = [None] * len(batch)
        for decoding in {decoding for _, decoding, _ in batch}:
            chosen = [i for i, (_, asked, _) in enumerate(batch) if asked == decoding]
            for i, reading in zip(chosen, decode(logits[chosen], self.reader.spec, *decoding)):
                readings[i] = reading
        return readings


class BodyLimit:
    """ASGI middleware: a body over `max_bytes` is refused by its Content-Length, or once that much has come."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        """Refuse a declared oversize body at once; count the bytes of any other."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await too_large_response(self.max_bytes)(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> dict:
            """The next ASGI message of the body, refused once the body passes the limit."""
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise BodyTooLarge  # raised inside the endpoint's body read, answered by its handler
            return message

        await self.app(scope, limited_receive, send)


def too_large_response(max_bytes: int) -> JSONResponse:
    """The 413 answer to a body over the limit."""
    return JSONResponse({"error": f"request body too large (limit {max_bytes:,} bytes)"}, status_code=413)


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    """Every error of the service: JSON with one `error` message."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


bearer = HTTPBearer(auto_error=False, description=f"the service's token (--token or {TOKEN_ENV}), when it has one")


def require_token(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
    """Let the request through when the service has no token or the request carries it."""
    token = request.app.state.settings.token
    if token is None:
        return
    given = credentials.credentials if credentials else ""
    if not secrets.compare_digest(given.encode(), token.encode()):
        raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})


def upload_from_base64(index: int, text: object) -> Upload:
    """One JSON image: base64 (a `data:` URL prefix allowed) decoded, or the problem with it."""
    name = f"image {index + 1}"
    if not isinstance(text, str):
        return Upload(name, b"", f"{name}: expected a base64 string, got {type(text).__name__}")
    try:
        return Upload(name, base64.b64decode(text.partition(",")[2] if text.startswith("data:") else text,
                                             validate=True))
    except (binascii.Error, ValueError):
        return Upload(name, b"", f"{name}: not valid base64")


async def uploads_from(request: Request, settings: ServiceSettings) -> list[Upload]:
    """The request's images in order, from multipart files or a JSON body; HTTPException when malformed."""
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("multipart/form-data"):
        async with request.form(max_files=settings.max_images, max_fields=settings.max_images) as form:
            files = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
            uploads = [Upload(file.filename or f"image {i + 1}", await file.read()) for i, file in enumerate(files)]
    elif content_type.startswith("application/json"):
        try:
            body = await request.json()
        except ValueError:
            raise HTTPException(400, "the body is not valid JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("images"), list):
            raise HTTPException(422, 'expected a JSON object {"images": [base64, ...]}')
        if len(body["images"]) > settings.max_images:
            raise HTTPException(413, f"too many images: {len(body['images'])} (limit {settings.max_images} per request)")
        uploads = [upload_from_base64(i, text) for i, text in enumerate(body["images"])]
    else:
        raise HTTPException(415, 'send images as multipart/form-data files or JSON {"images": [base64, ...]}')
    if not uploads:
        raise HTTPException(422, "no images in the request")
    return uploads


def decode_uploads(uploads: list[Upload], height: int, width: int, max_pixels: int) -> list[np.ndarray | str]:
    """Each upload as a model-ready array, or the message that says why it cannot be read."""
    decoded: list[np.ndarray | str] = []
    for upload in uploads:
        if upload.problem:
            decoded.append(upload.problem)
        elif not upload.data:
            decoded.append(f"{upload.name}: empty file")
        else:
            try:
                decoded.append(read_image(upload.data, height, width, max_pixels))
            except ImageReadError as error:
                decoded.append(str(error).replace(describe(upload.data), upload.name, 1))
    return decoded


def decoding_asked(reader: BaseReader, charset: str | None, length: str | None, greedy: bool) -> Decoding:
    """The decoding a request's query asks for, checked against the model; HTTPException 422 when it cannot be."""
    try:
        asked = requested_format(charset, length, greedy)
        return Decoding(decoding_format(reader.spec, asked, greedy), greedy)
    except TextFormatError as error:
        raise HTTPException(422, str(error)) from None


def result_of(item: np.ndarray | str, readings: dict[int, Reading], index: int) -> dict:
    """The answer for one image: its reading, or its error."""
    if isinstance(item, str):
        return {"error": item}
    return readings[index].as_json()


class ReadQuery(BaseModel):
    """The text format a /read request asks for; a misspelt parameter is refused, not ignored."""

    model_config = ConfigDict(extra="forbid")
    length: str | None = Field(None, description="allowed text length: 4, or a range such as 4-6"
                                                 " (default: the lengths of the model's training labels)")
    charset: str | None = Field(None, description="allowed characters, a subset of the model's (default: all)")
    greedy: bool = Field(False, description="the best class at each step instead: any length")


READ_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "images": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
    "application/json": {"schema": {"type": "object", "required": ["images"], "properties": {
        "images": {"type": "array", "items": {"type": "string", "format": "byte"}}}}},
}}}
READ_ANSWERS = {
    200: {"description": '{"results": [{"text", "confidence", "char_confidences"} or {"error"}, ...]}, one per'
                         ' image, in order'},
    400: {"description": "a body that is not valid JSON or multipart, or more multipart files than max_images"
                         " (Starlette's parser refuses them while reading)"},
    401: {"description": "the service has a token and the request did not carry it"},
    413: {"description": "body over the limit, or more JSON images than max_images"},
    415: {"description": "neither multipart/form-data nor JSON"},
    422: {"description": "malformed request, a text format the model cannot read, or no image in it could be read"
                         " (results say why)"},
    503: {"description": "the queue is full: try again after Retry-After seconds"},
}

router = APIRouter()


@router.post("/read", dependencies=[Depends(require_token)], openapi_extra=READ_BODY, responses=READ_ANSWERS)
async def read_images(request: Request, query: Annotated[ReadQuery, Query()]) -> JSONResponse:
    """Read one or many captcha images: one result per image, in order, in the text format the query asks for."""
    state = request.app.state
    settings: ServiceSettings = state.settings
    decoding = decoding_asked(state.reader, query.charset, query.length, query.greedy)
    uploads = await uploads_from(request, settings)
    with state.batcher.admission(len(uploads)):
        spec = state.reader.spec
        decoded = await asyncio.get_running_loop().run_in_executor(
            state.decoder, decode_uploads, uploads, spec.height, spec.width, settings.max_pixels)
        good = [i for i, item in enumerate(decoded) if not isinstance(item, str)]
        readings = dict(zip(good, await state.batcher.read([decoded[i] for i in good], decoding))) if good else {}
    results = [result_of(item, readings, i) for i, item in enumerate(decoded)]
    if good:
        return JSONResponse({"results": results})
    summary = results[0]["error"] if len(results) == 1 else f"none of the {len(results)} images could be read"
    return JSONResponse({"error": summary, "results": results}, status_code=422)


@router.get("/model", dependencies=[Depends(require_token)])
async def model_info(request: Request) -> dict:
    """What the model knows: charset, geometry, longest label, validation scores, format version."""
    return request.app.state.reader.info()


health_router = APIRouter()


@health_router.get("/health")
async def health(request: Request) -> dict:
    """For probes: the service is up; with its queue and batch counts when it reads."""
    batcher: Batcher | None = request.app.state.batcher
    counts = {} if batcher is None else {
        "queued": batcher.admitted, "batches": batcher.batches, "images_read": batcher.images_read,
        "largest_batch": batcher.largest_batch}
    return {"status": "ok", "reading": batcher is not None, **counts,
            "token_required": request.app.state.settings.token is not None}


@router.get("/", include_in_schema=False)
async def demo_page() -> FileResponse:
    """The demo page: drop, paste or choose images and see what the model reads."""
    return FileResponse(STATIC_DIR / "index.html")


def install_error_handlers(app: FastAPI) -> None:
    """Answer every refused request with JSON `{"error": ...}` and the right status."""

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> JSONResponse:
        """An HTTP error as JSON."""
        return error_response(error.status_code, str(error.detail), error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        """A request FastAPI could not validate, as a 422 with the reasons."""
        return error_response(422, "; ".join(f"{item['loc'][-1]}: {item['msg']}" for item in error.errors()))

    @app.exception_handler(BodyTooLarge)
    async def body_too_large(request: Request, _: BodyTooLarge) -> JSONResponse:
        """A body over the limit, as a 413."""
        return too_large_response(request.app.state.settings.max_body_bytes)

    @app.exception_handler(QueueFull)
    async def queue_full(request: Request, _: QueueFull) -> JSONResponse:
        """A full queue, as a 503 with Retry-After."""
        settings = request.app.state.settings
        return error_response(503, f"busy: the queue holds {settings.max_queue} images; try again shortly",
                              {"Retry-After": str(settings.retry_after_s)})


class Page(NamedTuple):
    """Another page of the app (the labelling page): its routes, where / leads without a model, its clean-up."""

    router: APIRouter
    home: str
    stop: Callable[[], None]


def create_app(reader: BaseReader | None, settings: ServiceSettings = ServiceSettings(),
               pages: Sequence[Page] = ()) -> FastAPI:
    """The one FastAPI application: reading with `reader` (when given) and the other `pages`."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        """Start the decoding threads and the batcher; stop them, and the pages' work, when the server stops."""
        decoder = ThreadPoolExecutor(settings.decode_threads, thread_name_prefix="decode")
        app.state.decoder = decoder
        if reader is not None:
            await app.state.batcher.start()
        # The objects made at startup (FastAPI's, pydantic's, the model's) live as long as the app: frozen,
        # the collector stops walking them, and its full collections no longer pause every request in flight.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            for page in pages:
                page.stop()
            if reader is not None:
                await app.state.batcher.stop()
            decoder.shutdown(wait=True)

    # FastAPIOffline serves the /docs and /redoc pages' scripts itself: FastAPI's defaults load them from a CDN.
    app = FastAPIOffline(title="ocr_captcha reading service", lifespan=lifespan,
                         description="Reads captcha images with a model trained by ocr_captcha.py.")
    app.state.reader = reader
    app.state.settings = settings
    app.state.batcher = None if reader is None else Batcher(reader, settings.max_batch, settings.max_wait_ms / 1000,
                                                            settings.max_queue)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    install_error_handlers(app)
    app.include_router(health_router)
    if reader is not None:
        app.include_router(router)
    for page in pages:
        app.include_router(page.router)
    if reader is None and pages:

        @app.get("/", include_in_schema=False)
        def home() -> RedirectResponse:
            """Without a model to read with, / leads to the first page."""
            return RedirectResponse(pages[0].home)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the service's command line."""
    parser = OneLineParser(description="Serve a captcha model over HTTP (POST /read, GET /model, GET /health,"
                                       " demo page at /, docs at /docs).")
    parser.add_argument("--model", default=DEFAULT_SERVICE_MODEL,
                        help="an .onnx export (onnxruntime, no TensorFlow), a .keras model, or base for the"
                             " shipped base model (default: %(default)s)")
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=port_number, default=DEFAULT_PORT, help="port (default: %(default)s)")
    parser.add_argument("--token", default=os.environ.get(TOKEN_ENV) or None,
                        help=f"require `Authorization: Bearer TOKEN` on /read and /model (default: ${TOKEN_ENV})")
    for item in fields(ServiceSettings):
        if item.name != "token":
            parser.add_argument(f"--{item.name.replace('_', '-')}", type=type(item.default), default=item.default,
                                help=f"{item.metadata['help']} (default: {item.default})")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    try:
        args.settings = settings_from(args)
    except SettingError as error:
        parser.error(f"--{error.name.replace('_', '-')}: {error.problem}")
    return args


def settings_from(args: argparse.Namespace) -> ServiceSettings:
    """The service settings the flags ask for."""
    return ServiceSettings(**{item.name: getattr(args, item.name) for item in fields(ServiceSettings)})


def check_port_free(host: str, port: int) -> None:
    """A UserError when another server already listens on host:port, before anything slow is loaded."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a closing socket is no clash
        try:
            probe.bind((host, port))
        except OSError as error:
            clash = ": is another server running? pick another --port" if error.errno == errno.EADDRINUSE else ""
            raise UserError(f"cannot listen on {host}:{port} ({error.strerror}){clash}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Open the model and serve it until SIGINT or SIGTERM (requests in flight are finished first)."""
    args = parse_args(argv)
    settings = args.settings
    try:
        model = existing_model(named_model(args.model))  # a missing model is the first thing to hear of
        check_port_free(args.host, args.port)  # before the model loads: a busy port fails at once
        reader = open_reader(model)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if settings.token is None and args.host not in LOCAL_HOSTS:
        print(f"warning: serving on {args.host} without a token: anyone who can reach this address can use it;"
              f" set --token or {TOKEN_ENV}", file=sys.stderr)
    uvicorn.run(create_app(reader, settings), host=args.host, port=args.port, access_log=args.access_log,
                timeout_graceful_shutdown=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
