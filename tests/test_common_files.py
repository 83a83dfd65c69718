"""Downloads and layouts: a local copy wins, an offline download says what to do, the source is only read."""
import pytest

from common.errors import UserError
from common.files import check_apart, fetch


def test_fetch_takes_the_local_copy_and_never_downloads(tmp_path, monkeypatch):
    import keras

    def no_download(*args, **kwargs):
        raise AssertionError("downloaded although a local copy was given")

    monkeypatch.setattr(keras.utils, "get_file", no_download)
    assert fetch(tmp_path, url="https://example.invalid/a.tgz", file_name="a.tgz", alternative="pass --from DIR") == tmp_path
    with pytest.raises(UserError, match="does not exist; pass --from DIR"):
        fetch(tmp_path / "missing", url="https://example.invalid/a.tgz", file_name="a.tgz", alternative="pass --from DIR")


def test_fetch_offline_names_the_file_the_cache_folder_and_the_way_out(tmp_path, monkeypatch):
    import keras

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -3] name resolution\nsecond line")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(UserError) as error:
        fetch(None, url="https://example.invalid/a.tgz", file_name="a.tgz", alternative="pass --from DIR")
    message = str(error.value)
    assert message == (
        "could not download a.tgz (URL fetch failure: [Errno -3] name resolution). Without a network, "
        f"put a.tgz in {tmp_path / 'keras' / 'datasets'}/ and rerun, or pass --from DIR"
    )


@pytest.mark.parametrize("output", ["source/inside", "source", "."])
def test_an_output_overlapping_the_source_is_refused(tmp_path, output):
    (tmp_path / "source").mkdir()
    with pytest.raises(UserError, match="only read, never written to"):
        check_apart(tmp_path / output, tmp_path / "source", flag="--data-dir")


def test_a_sibling_with_a_common_prefix_is_not_inside(tmp_path):
    (tmp_path / "source").mkdir()
    check_apart(tmp_path / "source-copy", tmp_path / "source")  # a string prefix is not a parent
