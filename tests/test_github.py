"""GitHub outputs: parsed back as the runner parses them; masks, annotations, summary size."""

from __future__ import annotations

import io

from signaction.github import Actions, summary_markdown


def parse_github_output(text: str) -> dict[str, str]:
    """The runner's parser for $GITHUB_OUTPUT: name=value, or name<<DELIM ... DELIM."""
    out, lines, i = {}, text.split("\n"), 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delim = line.split("<<", 1)
            j = lines.index(delim, i + 1)
            out[name] = "\n".join(lines[i + 1:j])
            i = j + 1
        elif "=" in line:
            name, value = line.split("=", 1)
            out[name] = value
            i += 1
        else:
            i += 1
    return out


def test_outputs_parse_back_including_multiline_and_tricky_values(tmp_path):
    path = tmp_path / "output"
    path.write_text("earlier=kept\n")
    actions = Actions({"GITHUB_OUTPUT": str(path)})
    tricky = "line1\nEOF\nname=injected\nghadelimiter_x"
    actions.set_outputs({"status": "success", "signed-count": "3", "results-file": tricky})
    parsed = parse_github_output(path.read_text())
    assert parsed == {"earlier": "kept", "status": "success", "signed-count": "3",
                      "results-file": tricky}


def test_masks_each_line_and_commands_only_in_github():
    out = io.StringIO()
    Actions({"GITHUB_ACTIONS": "true"}, out).mask(["one", "multi\nline\n\nsecret%"])
    assert out.getvalue().splitlines() == ["::add-mask::one", "::add-mask::multi",
                                           "::add-mask::line", "::add-mask::secret%25"]
    quiet = io.StringIO()
    outside = Actions({}, quiet)
    outside.mask(["x"])
    outside.error("t", "m")
    with outside.group("g"):
        pass
    outside.set_outputs({"a": "b"})
    assert quiet.getvalue() == ""


def test_error_annotations_escape_properties_and_data():
    out = io.StringIO()
    Actions({"GITHUB_ACTIONS": "true"}, out).error("Signing failed: r.io/a:1, x",
                                                    "line1\nline2 100%")
    assert out.getvalue() == ("::error title=Signing failed%3A r.io/a%3A1%2C x::"
                              "line1%0Aline2 100%25\n")


def test_summary_of_10000_images_stays_small_and_lists_failures_first():
    rows = [{"reference": f"r.io/ns/app{n}:v1", "digest": f"sha256:{n:064x}",
             "signing_key": "K" * 40, "status": "ok" if n % 10 else "failed",
             "error": None if n % 10 else "boom | " * 100} for n in range(10_000)]
    md = summary_markdown("Container signing", {"signed": 9000, "failed": 1000, "skipped": 0},
                          rows, "out/results.json")
    assert len(md.encode()) < 100_000
    table = [line for line in md.splitlines() if line.startswith("| ")][1:]
    assert len(table) == 200 and all("failed" in line for line in table)
    assert "…and 9800 more" in md
    assert "\\|" in md  # a | inside a cell cannot break the table


def test_summary_takes_its_rows_one_at_a_time_and_keeps_only_what_it_lists():
    """100,000 rows handed over as a generator (a big run need not hold them all as dicts): the
    few failures come first, then the first ok rows in order; the rest is counted."""
    read = [0]

    def rows():
        for n in range(100_000):
            row = {"reference": f"r.io/ns/app{n}:v1", "digest": f"sha256:{n:064x}",
                   "signing_key": "K", "status": "failed" if n in (5, 70_000) else "ok",
                   "error": "boom" if n in (5, 70_000) else None}
            read[0] += 1
            yield row

    md = summary_markdown("Container signing", {"signed": 99_998, "failed": 2, "skipped": 0},
                          rows(), "out/results.json")
    assert read[0] == 100_000  # read to the end: the count is right
    table = [line for line in md.splitlines() if line.startswith("| ")][1:]
    assert len(table) == 200
    assert "app5:v1" in table[0] and "app70000:v1" in table[1]
    assert "app0:v1" in table[2] and "app198:v1" in table[-1]  # then the ok ones, in order
    assert "…and 99800 more" in md


def test_signer_stats_in_the_summary_are_escaped():
    """merge sums the stats of shard folders (from outside): a key is text, not Markdown."""
    md = summary_markdown("Container signing", {"signed": 1, "failed": 0, "skipped": 0}, [],
                          "r.json", {"<img src=x> **b** [l](http://e)": 3, "replies": 2})
    line = next(x for x in md.splitlines() if x.startswith("Signer: "))
    assert "<img" not in line and "**b**" not in line and "](" not in line
    assert line.endswith("replies 2")
