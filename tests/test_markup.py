"""Record text never becomes markup: :mod:`ptqcore.results.markup` checked by a real CommonMark + GFM-table
parser (markdown-it-py) on any text, and ``compare --markdown`` / ``report`` fed a failed record
whose problem is markup, pipes and line breaks."""

import html
import json
import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from ptqcore.cli import main
from ptqcore.results.markup import html_text, md_cell, md_code, md_text, one_line

GOLDEN = Path(__file__).resolve().parent / "data" / "golden"
FAILING = "tiny_cnn-fp32-onnxruntime-cpu-b1"
PLANTED_PROBLEM = "planted by tests/data/make_golden.py"
PAYLOAD = ("<img src=x onerror=alert(1)> </details> *bold* [link](http://x) `code`\n## Injected heading\n"
           "| a | b |\n|---|---|\n1. item\n- item ~~struck~~ _em_ \\")

#: GitHub's job summaries are GFM: CommonMark (inline HTML on) with tables and strike-through.
PARSER = MarkdownIt("commonmark").enable(["table", "strikethrough"])
#: Printable ASCII (every Markdown and HTML special), line breaks, tabs and a few non-ASCII letters.
TEXT = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126) | st.sampled_from("\n\r\t\u00e9\u4e2d"),
               max_size=40)


def rendered_text(fragment: str) -> str:
    """What a reader sees of an HTML fragment: tags dropped, entities decoded."""
    return html.unescape(re.sub(r"<[^>]*>", "", fragment))


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_md_text_renders_as_the_text_itself_in_a_cell_a_paragraph_a_list_item_and_a_quote(text):
    expected = one_line(text)
    document = f"| h |\n|---|\n| {md_cell(text)} |\n\n{md_text(text)}\n\n- {md_text(text)}\n\n> {md_text(text)}\n"
    out = PARSER.render(document)
    body = out.split("<tbody>")[1].split("</tbody>")[0]
    assert body.count("<tr>") == 1 and body.count("<td>") == 1, out
    cell = body.split("<td>")[1].split("</td>")[0]
    assert "<" not in cell and html.unescape(cell).strip() == expected, out
    rest = out.split("</table>")[1]
    tags = re.findall(r"</?([a-z0-9]+)", rest)
    assert set(tags) <= {"p", "ul", "li", "blockquote"}, out  # no heading, emphasis, link, image, code, raw HTML
    assert rendered_text(rest).split() == (expected.split() * 3), out


@settings(max_examples=200, deadline=None)
@given(TEXT.filter(lambda t: one_line(t) != ""))
def test_md_code_is_one_code_span_of_the_text(text):
    out = PARSER.render(f"- {md_code(text)}\n")
    assert re.fullmatch(r"<ul>\n<li><code>[^<]*</code></li>\n</ul>\n", out), out
    assert html.unescape(out.split("<code>")[1].split("</code>")[0]) == one_line(text), out


@given(TEXT)
def test_html_text_leaves_no_tag_or_attribute_break(text):
    escaped = html_text(text)
    assert not set("<>\"'") & set(escaped) and html.unescape(escaped) == text


def planted_with(tmp_path, problem: str) -> Path:
    """planted.json with its failed record's problem (in both copies of the file) replaced by ``problem``."""
    content = (GOLDEN / "planted.json").read_text()
    assert content.count(PLANTED_PROBLEM) == 3
    path = tmp_path / "planted-markup.json"
    path.write_text(content.replace(PLANTED_PROBLEM, json.dumps(problem)[1:-1]))
    return path


def test_compare_markdown_shows_a_problem_made_of_markup_as_text(capsys, tmp_path):
    code = main(["compare", str(GOLDEN / "baseline.json"), str(planted_with(tmp_path, PAYLOAD)), "--markdown"])
    out, err = capsys.readouterr()
    assert code == 1 and err == ""
    page = PARSER.render(out)
    assert "<img" not in page and "Injected" not in re.sub(r"<(?!h)[^>]*>", "", "".join(re.findall(r"<h\d>.*?</h\d>", page)))
    assert page.count("<table>") == 2 and page.count("<details>") == page.count("</details>") == 1
    (line,) = [line for line in out.splitlines() if line.startswith(f"- `{FAILING}`")]
    (item,) = [li for li in re.findall(r"<li>(.*?)</li>", page, re.S) if FAILING in li]
    assert rendered_text(item) == f"{FAILING}: test_latency (call): BuildError: {one_line(PAYLOAD)}; fix: none, it is planted"


def test_report_markdown_and_html_show_a_problem_made_of_markup_as_text(capsys, tmp_path):
    out_dir = tmp_path / "report"
    code = main(["report", str(planted_with(tmp_path, PAYLOAD)), "-o", str(out_dir)])
    capsys.readouterr()
    assert code == 0
    page = (out_dir / "index.html").read_text(encoding="utf-8")
    markdown = PARSER.render((out_dir / "report.md").read_text(encoding="utf-8"))
    for rendered in (page, markdown):
        assert "<img src=x" not in rendered and "<h2>Injected" not in rendered
        assert one_line(PAYLOAD) in rendered_text(rendered).replace("\n", " ")
