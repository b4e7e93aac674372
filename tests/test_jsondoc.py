"""The shared reader of small JSON documents: every hostile case is one error naming the file."""

import json

import pytest

from neural_collages.errors import CollageError, FormatError
from neural_collages.jsondoc import parse_document, read_document

EXPECT = dict(kind="IFS file", fmt="neural-collages-ifs", version=1, max_bytes=200)
GOOD = json.dumps({"format": "neural-collages-ifs", "version": 1, "x": 1})


@pytest.mark.parametrize("text, message", [
    (" " * 201, "larger than the 200 bytes an IFS file may have"),
    ('{"format": "neural-collages-ifs", "version": 1, "x": NaN}', "corrupt IFS file, not valid JSON"),
    ("[" * 100 + "]" * 100, "not an IFS file"),
    ("[" * 10_000 + "]" * 10_000, "corrupt IFS file, not valid JSON"),
    (b"\xff\xfe{}", "corrupt IFS file, not valid JSON"),
    ('{"format": "other", "version": 1}', 'not an IFS file \\(no "format": "neural-collages-ifs"\\)'),
    ('{"format": "neural-collages-ifs", "version": 2}', "IFS file version 2; this build reads version 1"),
])
def test_each_bad_document_is_one_error_naming_its_source(text, message):
    expect = dict(EXPECT, max_bytes=100_000) if len(text) > 201 else EXPECT
    with pytest.raises(FormatError, match=f"^doc.json: {message}"):
        parse_document(text, "doc.json", **expect)


def test_a_good_document_is_returned_whole():
    assert parse_document(GOOD, "doc.json", **EXPECT)["x"] == 1


def test_files_are_size_checked_first_and_errors_carry_the_callers_type_and_hint(tmp_path):
    class ManifestError(CollageError):
        pass

    path = tmp_path / "big.json"
    path.write_text(GOOD + " " * 300)
    with pytest.raises(ManifestError, match=r"big.json: larger than the 200 bytes .*; rebuild it$"):
        read_document(path, **EXPECT, error=ManifestError, hint="rebuild it")
    with pytest.raises(FormatError, match="missing.json: no such file"):
        read_document(tmp_path / "missing.json", **EXPECT)
    with pytest.raises(FormatError, match="unreadable"):
        read_document(tmp_path, **dict(EXPECT, max_bytes=1 << 20))
    (tmp_path / "good.json").write_text(GOOD)
    assert read_document(tmp_path / "good.json", **EXPECT)["version"] == 1
