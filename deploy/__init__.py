"""Deploying a trained classifier (textbook text 004: train, test, then deploy the transfer model).

``python -m deploy.export --run-dir RUN`` turns the ``model.keras`` of any
classifier run (cats_dogs, flowers, flower17) into the formats a deployment
uses -- a TensorFlow SavedModel, TFLite (float and int8 dynamic-range), ONNX --
with the class names and the preprocessing beside them, and measures on the
run's own validation images how far each format is from the Keras model
(``parity.json``). ``python -m deploy.serve --model EXPORT_DIR`` serves one of
them: a web page to upload an image and a JSON endpoint. ``deploy.runtime``
is what both share: reading an export folder, decoding an image exactly as
training did, and calling each format. The export's converters are
``deploy.formats``, its measurement against the Keras model ``deploy.parity``;
the server's upload checks are ``deploy.uploads``, its model call
``deploy.classifier`` and its page ``deploy.page``.
"""
