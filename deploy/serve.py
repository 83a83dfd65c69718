"""Serve an exported classifier: a web page to upload an image, and a JSON endpoint.

    python -m deploy.serve --model runs/cats_dogs/bottleneck-20260101-120000/export
    python -m deploy.serve --model EXPORT_DIR --format tflite_int8 --port 8080

Then open http://127.0.0.1:8000/ (the page: choose an image, see it with its
top classes and their probabilities), or ask the endpoint:

    curl -F image=@cat.jpg 'http://127.0.0.1:8000/api/predict?top_k=2'

which answers ``{"top": [{"label": ..., "probability": ...}, ...], "probabilities": {...}, ...}``.
``GET /api/info`` describes the model. The server binds 127.0.0.1 (this
machine only) unless ``--host`` says otherwise. A bad upload -- no file, an
empty file, one over ``--max-upload-mb``, a file that is not an image, an
image format the training pipeline does not read (JPEG, PNG, GIF and BMP are
read), a corrupt image -- gets a 4xx answer that says which, on the page as
on the endpoint, and the server goes on serving.

Built on FastAPI (on Starlette): a small, actively maintained library whose
page here is plain server-rendered HTML (a form, no JavaScript), whose
uploads go through python-multipart, and whose test client runs the app in
the test process. Gradio would bring a large dependency tree and a
JavaScript front end that reports usage online by default, for one upload
form.
"""
from __future__ import annotations

# this module is the application and the command; what an upload must be is deploy.uploads', the model behind
# the endpoints deploy.classifier's, the HTML deploy.page's. The docstring above is --help's text.
import common.startup  # noqa: F401  (first, before TensorFlow: its start-up messages only with --verbose)

# isort: split
import socket
from pathlib import Path

from common.errors import UserError, main_guard
from deploy.classifier import Classifier, ranked
from deploy.page import render_page
from deploy.runtime import FORMAT_FILES
from deploy.uploads import UploadProblem, check_upload, megabytes

try:  # at module level: FastAPI reads the endpoints' annotations (Request) from this module's names
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.concurrency import run_in_threadpool
except ImportError as error:  # deploy.export and the tests of the runtime need none of it
    FastAPI = Request = HTMLResponse = JSONResponse = run_in_threadpool = None
    MISSING = error
else:
    MISSING = None

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_UPLOAD_MB = 10.0
FIELD = "image"


def create_app(export_dir, model_format: str = "tflite", max_upload_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 1e6),
               top_k: int = 5):
    """The FastAPI application; ``python -m deploy.serve`` runs it with uvicorn."""
    if MISSING is not None:
        raise UserError(f"serving needs fastapi, uvicorn and python-multipart ({MISSING}); pip install them")
    classifier = Classifier(export_dir, model_format)
    app = FastAPI(title=f"{', '.join(classifier.class_names)} classifier", docs_url=None, redoc_url=None)
    app.state.classifier = classifier

    async def read_upload(request: Request) -> tuple[bytes, str, str | None, str]:
        """(bytes, file name, declared type, image format) of the form field ``image``, checked."""
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > max_upload_bytes + 64_000:  # refuse before reading it
            raise UploadProblem(413, f"the upload is {megabytes(int(length))}; "
                                     f"the limit is {megabytes(max_upload_bytes)}")
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            raise UploadProblem(415, f"send the image as multipart/form-data in the field {FIELD!r}, "
                                     f"not as {content_type or 'a body without a type'}")
        try:
            form = await request.form(max_files=1, max_fields=10)
        except Exception as error:  # noqa: BLE001  (malformed multipart bodies, too many files)
            raise UploadProblem(400, f"the form could not be read: {error}") from None
        try:
            upload = form.get(FIELD)
            if upload is None or isinstance(upload, str):
                raise UploadProblem(400, f"no file in the form field {FIELD!r}: choose an image file")
            data = await upload.read(max_upload_bytes + 1)
            name = upload.filename or "upload"
            declared = upload.content_type
        finally:
            await form.close()
        kind = check_upload(data, max_upload_bytes, declared)
        return data, name, declared, kind

    async def predict(request: Request, k: int) -> tuple[dict, bytes, str]:
        data, name, _, kind = await read_upload(request)
        probabilities = await run_in_threadpool(classifier.probabilities, data)
        names = classifier.class_names
        result = {"file": name, "format": classifier.format, "top": ranked(probabilities, names, k),
                  "probabilities": {label: float(p) for label, p in zip(names, probabilities, strict=True)}}
        return result, data, kind

    def requested_k(request: Request) -> int:
        value = request.query_params.get("top_k", str(top_k))
        if not value.isdigit() or int(value) < 1:
            raise UploadProblem(400, f"top_k must be a whole number of at least 1, not {value!r}")
        return int(value)

    @app.get("/api/info")
    def info():
        return classifier.info()

    @app.post("/api/predict")
    async def predict_json(request: Request):
        try:
            result, _, _ = await predict(request, requested_k(request))
        except UploadProblem as problem:
            return JSONResponse({"detail": problem.message}, status_code=problem.status)
        return result

    @app.get("/", response_class=HTMLResponse)
    def page():
        return HTMLResponse(render_page(classifier))

    @app.post("/", response_class=HTMLResponse)
    async def page_upload(request: Request):
        try:
            result, data, kind = await predict(request, top_k)
        except UploadProblem as problem:
            return HTMLResponse(render_page(classifier, error=problem.message), status_code=problem.status)
        return HTMLResponse(render_page(classifier, result=result, image=(data, kind)))

    return app


def parse_args(argv=None):
    from common import cli

    parser = cli.parser_from_doc(__doc__)
    parser.add_argument("--model", required=True, metavar="EXPORT_DIR",
                        help="a folder written by python -m deploy.export")
    parser.add_argument("--format", default="tflite", choices=list(FORMAT_FILES),
                        help="which exported model answers (default: tflite, the float TFLite model)")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to bind (default: {DEFAULT_HOST}, this machine only; "
                        "0.0.0.0 opens it to the network)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"(default: {DEFAULT_PORT})")
    parser.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB,
                        help=f"largest upload accepted, in MB (default: {DEFAULT_MAX_UPLOAD_MB:g})")
    parser.add_argument("--top-k", type=int, default=5, help="classes shown on the page (default: 5)")
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        parser.error(f"--port must be between 1 and 65535, not {args.port}")
    if not args.max_upload_mb > 0:
        parser.error(f"--max-upload-mb must be positive, not {args.max_upload_mb}")
    if args.top_k < 1:
        parser.error(f"--top-k must be at least 1, not {args.top_k}")
    return args


def check_port_free(host: str, port: int) -> None:
    """One line for a port in use, instead of uvicorn's log and exit after the model has loaded."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as error:
        raise UserError(f"cannot listen on {host}:{port}: {error.strerror or error}; "
                        "choose another --port or --host") from None


@main_guard
def main(argv=None) -> None:
    args = parse_args(argv)
    check_port_free(args.host, args.port)
    try:
        import uvicorn
    except ImportError as error:
        raise UserError(f"serving needs fastapi, uvicorn and python-multipart ({error}); pip install them") from None
    app = create_app(args.model, args.format, int(args.max_upload_mb * 1e6), args.top_k)
    print(f"serving {Path(args.model) / FORMAT_FILES[args.format]} on http://{args.host}:{args.port}/ (Ctrl-C stops)",
          flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
