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

import common.startup  # noqa: F401  (first, before TensorFlow: its start-up messages only with --verbose)

# isort: split
import base64
import html
import io
import re
import socket
from pathlib import Path

import numpy as np

from common.data import DECODABLE_FORMATS
from common.errors import UserError, main_guard
from deploy.runtime import FORMAT_FILES, class_probabilities, decode_bytes, load_format, read_manifest

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
MAX_PIXELS = 40_000_000  # a larger image is refused before it is decoded (a decompression bomb)
FIELD = "image"
MIME_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "BMP": "image/bmp"}


class UploadProblem(Exception):
    """A bad upload: the HTTP status it gets and the sentence that says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def check_upload(data: bytes, max_bytes: int, declared_type: str | None = None) -> str:
    """The image format of an upload (``JPEG``, ...), or an ``UploadProblem``; nothing is decoded yet."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise UploadProblem(400, "the upload is empty: choose an image file")
    if len(data) > max_bytes:
        raise UploadProblem(413, f"the upload is {_megabytes(len(data))}; the limit is {_megabytes(max_bytes)}")
    sent_as = f" (it was sent as {declared_type})" if declared_type else ""
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind, (width, height) = image.format, image.size
    except (UnidentifiedImageError, OSError, ValueError):
        if declared_type and declared_type.startswith("image/"):  # the right kind of file, broken: malformed
            raise UploadProblem(400, f"the upload{sent_as} cannot be read as an image: corrupt or cut short?") from None
        raise UploadProblem(415, f"the upload is not an image{sent_as}; send a JPEG, PNG, GIF or BMP file") from None
    except Image.DecompressionBombError:
        raise UploadProblem(413, "the image has too many pixels to decode") from None
    if kind not in DECODABLE_FORMATS:
        raise UploadProblem(415, f"{kind} images are not read by the model's pipeline; "
                                 "send a JPEG, PNG, GIF or BMP file")
    if width * height > MAX_PIXELS:
        raise UploadProblem(413, f"the image is {width}x{height} pixels; the limit is {MAX_PIXELS:,} pixels")
    return kind


def _megabytes(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 1_000_000 else f"{count:,} bytes"


class Classifier:
    """One exported format with its manifest: image bytes in, probabilities per class out."""

    def __init__(self, export_dir, model_format: str = "tflite"):
        self.export_dir = Path(export_dir)
        self.manifest = read_manifest(self.export_dir)
        self.class_names = self.manifest["class_names"]
        self.image_size = int(self.manifest["image_size"])
        self.format = model_format
        self.model = load_format(self.export_dir, model_format)

    def pixels(self, data: bytes) -> np.ndarray:
        try:
            return decode_bytes(data, self.image_size)
        except Exception as error:  # noqa: BLE001  (TensorFlow's decoders raise InvalidArgumentError and others)
            reason = re.sub(r"\{\{.*?\}\}\s*|\s*\[Op:\w+\]", "", str(error)).strip()  # TensorFlow's op decoration
            reason = reason.splitlines()[0] if reason else type(error).__name__
            raise UploadProblem(400, f"the image could not be decoded (corrupt or cut short?): {reason[:200]}") \
                from None

    def probabilities(self, data: bytes) -> np.ndarray:
        outputs = self.model(self.pixels(data)[None])
        return class_probabilities(outputs, len(self.class_names))[0]

    def info(self) -> dict:
        return {"format": self.format, "file": FORMAT_FILES[self.format], "class_names": self.class_names,
                "image_size": self.image_size, "backbone": self.manifest.get("backbone"),
                "input": self.manifest.get("input"), "resize": self.manifest.get("resize")}


def ranked(probabilities, class_names: list[str], k: int) -> list[dict]:
    order = np.argsort(-np.asarray(probabilities), kind="stable")[: max(1, k)]
    return [{"label": class_names[i], "probability": float(probabilities[i])} for i in order]


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
            raise UploadProblem(413, f"the upload is {_megabytes(int(length))}; "
                                     f"the limit is {_megabytes(max_upload_bytes)}")
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


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; max-width: 40em; margin: 2em auto; padding: 0 1em; }}
#uploaded {{ max-width: 100%; max-height: 20em; display: block; margin: 1em 0; }}
#error {{ color: #a00; font-weight: bold; }}
table {{ border-collapse: collapse; }} td, th {{ padding: 0.2em 0.8em; text-align: left; }}
td.probability {{ text-align: right; font-variant-numeric: tabular-nums; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p>Model: <code>{model}</code> ({size}&times;{size} pixels; classes: {classes}).</p>
<form id="upload" method="post" action="/" enctype="multipart/form-data">
<input id="image" type="file" name="image" accept="image/jpeg,image/png,image/gif,image/bmp" required>
<button id="submit" type="submit">Classify</button>
</form>
{body}
</body>
</html>
"""


def render_page(classifier: Classifier, result: dict | None = None, image=None, error: str | None = None) -> str:
    parts = []
    if error:
        parts.append(f'<p id="error" role="alert">{html.escape(error)}</p>')
    if result:
        data, kind = image
        source = f"data:{MIME_TYPES[kind]};base64,{base64.b64encode(data).decode()}"
        parts.append(f'<h2 id="file">{html.escape(result["file"])}</h2>')
        parts.append(f'<img id="uploaded" src="{source}" alt="the uploaded image">')
        rows = "".join(
            f'<tr><td class="label">{html.escape(item["label"])}</td>'
            f'<td class="probability">{item["probability"]:.4f}</td></tr>'
            for item in result["top"]
        )
        parts.append(f'<table id="predictions"><tr><th>class</th><th>probability</th></tr>{rows}</table>')
    return PAGE.format(
        title=html.escape(" / ".join(classifier.class_names[:5]) + (" / ..." if len(classifier.class_names) > 5 else "")
                          + " classifier"),
        model=html.escape(f"{classifier.export_dir / FORMAT_FILES[classifier.format]}"),
        size=classifier.image_size,
        classes=html.escape(", ".join(classifier.class_names)),
        body="\n".join(parts),
    )


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
