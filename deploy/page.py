"""The page ``deploy.serve`` answers with: an upload form, then the image with its top classes.

Plain server-rendered HTML (a form, no JavaScript), so it works in any
browser and a browser test drives it directly. The uploaded image is shown
from the bytes that were classified (a data: URL), so the picture is the
file the probabilities are about; every name that reaches the page (class
names, file names, error sentences) is escaped.
"""
from __future__ import annotations

import base64
import html

from deploy.classifier import Classifier
from deploy.runtime import FORMAT_FILES

MIME_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "BMP": "image/bmp"}

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
