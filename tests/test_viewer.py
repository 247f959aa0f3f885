"""The HTML viewer: self-contained and escaped; opened in headless Chromium, it renders, navigates, typesets math
and never runs a script from model output."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from qednano.records import Attempt, Completion, Grade, Problem
from qednano.report.scores import CellRecords, summarize
from qednano.report.viewer import embed_json, render_html

PAYLOAD = (
    "Proof: since $a^2 \\ge 0$ we are done. </script><script>document.body.appendChild("
    "document.createElement('pwned-'+'marker'))</script><img src=x onerror=\"document.body.appendChild("
    "document.createElement('pwned-'+'img'))\">"
)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def cells() -> list[CellRecords]:
    problems = {
        "P1": Problem(
            id="P1",
            statement="Prove that $x^2 \\ge 0$ for real $x$.",
            rubric="(Partial) 1.",
            metadata={"subset": "Basic"},
        ),
        "P2": Problem(id="P2", statement="Prove \\(1+1=2\\).", metadata={"subset": "Advanced"}),
    }
    solve = Completion(
        step="solve",
        model="tiny",
        messages=[{"role": "user", "content": "Solve: prove that $x^2 \\ge 0$."}],
        text="First draft with $\\frac{1}{2}$.",
        reasoning="Let me think about squares of reals.",
        input_tokens=12,
        output_tokens=34,
        finish_reason="stop",
    )
    refine = Completion(
        step="refine/1",
        model="tiny",
        messages=[{"role": "user", "content": "Improve the draft."}],
        text=PAYLOAD,
        input_tokens=56,
        output_tokens=78,
        finish_reason="length",
        truncated=True,
    )
    judge_call = Completion(
        step="judge/0", model="judge", messages=[{"role": "user", "content": "Grade it."}], text="<points>7</points>"
    )
    attempts = [
        Attempt(id="P1/0", problem_id="P1", sample=0, scaffold="rsa", proof=PAYLOAD, transcript=[solve, refine]),
        Attempt(id="P2/0", problem_id="P2", sample=0, scaffold="rsa", proof="Trivially \\(1+1=2\\)."),
    ]
    grades = {
        "P1/0": Grade(
            attempt_id="P1/0",
            problem_id="P1",
            judge="j",
            points=7,
            explanation="Correct: the square $x^2$ is nonnegative.",
            flags=["prompt_injection"],
            transcript=[judge_call],
        ),
        "P2/0": Grade(attempt_id="P2/0", problem_id="P2", judge="j", points=None, explanation="ungraded: no verdict"),
    }
    return [CellRecords(Path("runs/v"), "bench", "tiny", "rsa", "j", problems, attempts, grades, samples=1)]


@pytest.fixture
def page(tmp_path: Path) -> Path:
    cs = cells()
    path = tmp_path / "report.html"
    path.write_text(render_html(cs, [summarize(c) for c in cs], "Viewer </title><b>test</b>"), encoding="utf-8")
    return path


def test_embedded_json_cannot_end_the_script_element() -> None:
    data = {"text": PAYLOAD + " <!-- & \u2028"}
    embedded = embed_json(data)
    assert "<" not in embedded and ">" not in embedded and "&" not in embedded and "\u2028" not in embedded
    assert json.loads(embedded) == data


def test_html_is_one_self_contained_file(page: Path) -> None:
    html = page.read_text(encoding="utf-8")
    assert "<script>document.body" not in html and "<img src=x" not in html  # the payload is only data
    assert "<title>Viewer &lt;/title&gt;&lt;b&gt;test&lt;/b&gt;</title>" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)
    assert not re.search(r"url\((?!data:)", html)  # every font is a data URI
    assert html.count("url(data:font/woff2;base64,") == 20
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)
    assert "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
    scripts = re.findall(r"<script>(.*?)</script>", html, flags=re.S)
    assert len(scripts) == 3
    for script in scripts:
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy


def dump_dom(url: str, tmp_path: Path) -> str:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium; `make test-deps` does it)")
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--dump-dom",
        url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "<html" in result.stdout, result.stderr[-3000:]
    return result.stdout


def test_chromium_detects_a_script_that_runs(tmp_path: Path) -> None:
    """The check used below can fail: a page that really runs the payload shows the marker element."""
    control = tmp_path / "control.html"
    control.write_text(f"<!doctype html><html><body><div>{PAYLOAD}</div></body></html>", encoding="utf-8")
    dom = dump_dom(control.as_uri(), tmp_path)
    assert "<pwned-marker>" in dom or "<pwned-img>" in dom


def test_viewer_renders_and_navigates_in_chromium(page: Path, tmp_path: Path) -> None:
    home = dump_dom(page.as_uri(), tmp_path)
    assert 'data-view="runs"' in home and 'href="#/run/0"' in home and ">tiny / rsa<" in home

    run = dump_dom(page.as_uri() + "#/run/0", tmp_path)
    assert 'data-view="run"' in run and 'href="#/problem/0/P1"' in run and 'href="#/problem/0/P2"' in run
    flagged = dump_dom(page.as_uri() + "#/run/0?flag=prompt_injection", tmp_path)
    assert 'href="#/problem/0/P1"' in flagged and 'href="#/problem/0/P2"' not in flagged
    advanced = dump_dom(page.as_uri() + "#/run/0?subset=Advanced", tmp_path)
    assert 'href="#/problem/0/P2"' in advanced and 'href="#/problem/0/P1"' not in advanced
    high = dump_dom(page.as_uri() + "#/run/0?min=50", tmp_path)
    assert "1 problems shown" in high and 'href="#/problem/0/P1"' in high

    problem = dump_dom(page.as_uri() + "#/problem/0/P1", tmp_path)
    assert 'href="#/attempt/0/P1%2F0"' in problem and "7 / 7" in problem

    attempt = dump_dom(page.as_uri() + "#/attempt/0/P1%2F0", tmp_path)
    assert 'data-view="attempt"' in attempt
    transcript = attempt[attempt.index('id="transcript"') :]
    for text in (
        "Call 1: solve",
        "Call 2: refine/1",
        "Let me think about squares of reals.",
        "Improve the draft.",
        "12 in / 34 out tokens",
        "TRUNCATED",
    ):
        assert text in transcript
    grade = attempt[attempt.index('id="grade"') : attempt.index('id="transcript"')]
    assert "judge j · points 7 / 7 · flags: prompt_injection" in grade and "Correct: the square" in grade
    assert "Call 1: judge/0" in grade
    assert attempt.count('class="katex"') >= 4  # statement, proof, reasoning-free text, explanation are typeset
    assert "&lt;script&gt;document.body.appendChild" in attempt  # the payload is shown as text ...
    assert "<pwned-marker" not in attempt and "<pwned-img" not in attempt  # ... and never ran

    raw = dump_dom(page.as_uri() + "#/attempt/0/P1%2F0?math=off", tmp_path)
    assert 'class="katex"' not in raw and "$\\frac{1}{2}$" in raw


MARKDOWN_PROOF = (
    "# Solution\n\n"
    "**Claim.** For every *real* $x$ we have $x^2 \\ge 0$, and $\\text{area}(S) = 1$.\n\n"
    "- the first case, $a_1 * b_1$\n"
    "- the second case\n\n"
    "1. one step\n"
    "2. another step\n\n"
    "---\n\n"
    "It costs $5 and then $10 more, so $y$ is small; snake_case_name stays as it is.\n\n"
    "$$\\sum_{i=1}^{n} i = \\frac{n(n+1)}{2}$$\n\n"
    "<b>bold html</b><img src=x onerror=\"document.body.appendChild(document.createElement('pwned-'+'md'))\">"
)


def graded_cells(judges: int = 3, proof: str = MARKDOWN_PROOF) -> list[CellRecords]:
    """One run directory graded by several judges, with human points: a grader meta-evaluation."""
    problems = {"P1": Problem(id="P1", statement="Show that $x^2 \\ge 0$.")}
    call = Completion(step="solve", model="tiny", messages=[{"role": "user", "content": "Prove it."}], text=proof)
    attempts = [
        Attempt(id="P1/0", problem_id="P1", sample=0, scaffold="direct", proof=proof, transcript=[call], human_points=2)
    ]
    out = []
    for j in range(judges):
        grade = Grade(attempt_id="P1/0", problem_id="P1", judge=f"j{j}", points=1.8046875 + j, explanation="Fine.")
        out.append(
            CellRecords(Path("runs/g"), "graded", "tiny", "direct", f"j{j}", problems, attempts, {"P1/0": grade})
        )
    return out


def write_page(cs: list[CellRecords], path: Path) -> Path:
    path.write_text(render_html(cs, [summarize(c) for c in cs], "graded"), encoding="utf-8")
    return path


def test_viewer_classes_never_match_katex_spans() -> None:
    """KaTeX draws `\\text{...}` in a span of class `text`: no viewer rule may select a KaTeX class."""
    assets = Path(__file__).parents[1] / "src/qednano/report/viewer_assets"
    css = (assets / "viewer.css").read_text(encoding="utf-8")
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    ours = set(re.findall(r"\.(-?[A-Za-z_][\w-]*)", css))
    katex = set(re.findall(r"\.(-?[A-Za-z_][\w-]*)", (assets / "katex.min.css").read_text(encoding="utf-8")))
    katex_js = (assets / "katex.min.js").read_text(encoding="utf-8")
    assert '"mord","text"' in katex_js and ours  # the classes KaTeX gives its spans are in its script too
    assert not ours & katex, ours & katex
    assert not [name for name in ours if f'"{name}"' in katex_js]
    assert all(name.startswith("qv-") for name in ours), sorted(n for n in ours if not n.startswith("qv-"))
    js = (assets / "viewer.js").read_text(encoding="utf-8") + (assets / "markdown.js").read_text(encoding="utf-8")
    for classes in re.findall(r'class: "([^"]*)"', js):
        assert all(c.startswith("qv-") for c in classes.split()), classes


def test_page_stores_each_text_once(tmp_path: Path) -> None:
    proof = "".join(f"Step {i}: since $a_{i} \\ge 0$ the claim holds. " for i in range(2000))  # ~90 kB
    one = len(write_page(graded_cells(1, proof), tmp_path / "one.html").read_text(encoding="utf-8"))
    html = write_page(graded_cells(3, proof), tmp_path / "three.html").read_text(encoding="utf-8")
    assert html.count("Step 1999: since") == 1  # the proof is also its call's text, and three judges share it
    assert len(html) < one + 5_000


def test_proofs_render_as_markdown_safely_in_chromium(tmp_path: Path) -> None:
    page = write_page(graded_cells(), tmp_path / "graded.html")
    attempt = dump_dom(page.as_uri() + "#/attempt/0/P1%2F0", tmp_path)
    proof = attempt[attempt.index("<h3>Proof</h3>") : attempt.index("<h3>Grade</h3>")]
    assert re.search(r"<h4[^>]*>Solution</h4>", proof)
    assert "<strong>Claim.</strong>" in proof and "<em>real</em>" in proof
    assert re.search(r"<ul[^>]*><li>the first case, <span", proof) and proof.count("<li>") == 4
    assert re.search(r"<ol[^>]*><li>one step</li><li>another step</li></ol>", proof)
    assert re.search(r"<hr[^>]*>", proof)
    assert "It costs $5 and then $10 more, so <span" in proof  # money is no math, and $y$ after it still is
    assert "</span> is small; snake_case_name stays as it is." in proof
    assert proof.count('class="katex"') == 6 and proof.count('class="katex-display"') == 1
    assert "&lt;b&gt;bold html&lt;/b&gt;&lt;img src=x" in proof and "<pwned-md" not in attempt
    assert 'class="mord text"' in proof  # KaTeX's own \text{} span, which the viewer's CSS no longer reaches


def test_points_are_rounded_and_human_points_shown_on_every_page_in_chromium(tmp_path: Path) -> None:
    page = write_page(graded_cells(), tmp_path / "graded.html")
    attempt = dump_dom(page.as_uri() + "#/attempt/0/P1%2F0", tmp_path)
    assert "— 1.80 / 7 (human: 2 / 7)" in attempt and "points 1.80 / 7 · human points 2 / 7" in attempt
    assert "1.8046875" not in attempt.split("qednano-data")[0]

    run = dump_dom(page.as_uri() + "#/run/1", tmp_path)
    assert "<th>Human points per run</th>" in run and "<td>2.80 / 7</td><td>2 / 7</td>" in run
    problem = dump_dom(page.as_uri() + "#/problem/2/P1", tmp_path)
    assert "<td>3.80 / 7</td>" in problem and "<td>2 / 7</td>" in problem
