"""The HTML report in a real browser: Debian's Chromium, headless.

Each report is copied and a small script appended that, on load, marks every <figure> with
whether it rendered (an <img> that decoded, or an inline <svg> with a non-empty bounding box).
`--dump-dom` returns the DOM after that script ran; `--screenshot` must not be blank. Two decoy
figures (a broken image, an empty svg) prove the probe can say no.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from crestline.report import reader as report

pytest.importorskip("matplotlib")

from crestline.report.html import write_html  # noqa: E402

PROBE = """<figure id="fig-decoy-img"><img alt="" src="data:image/png;base64,AAAA"></figure>
<figure id="fig-decoy-svg"><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"></svg>
</figure>
<script>
window.addEventListener("load", function () {
  var figs = document.querySelectorAll("figure");
  figs.forEach(function (f) {
    var img = f.querySelector("img"), svg = f.querySelector("svg"), ok = false;
    if (img) {
      ok = img.complete && img.naturalWidth > 0;
    } else if (svg) {
      var b = svg.getBBox(), r = svg.getBoundingClientRect();
      ok = b.width > 0 && b.height > 0 && r.width > 0 && r.height > 0;
    }
    f.setAttribute("data-rendered", ok ? "yes" : "no");
  });
  document.body.setAttribute("data-figures-checked", String(figs.length));
});
</script>
"""

# Figure key -> how its caption starts: what a reader must find in each kind of report.
CAPTIONS = {
    "latency-vs-rate": "Latency percentiles per step against the offered rate",
    "trajectory": "Search trajectory",
    "gpu-vs-rate": "GPU per step",
    "rates": "Offered and achieved rate per interval",
    "latency-series": "Latency per interval",
    "gpu-series": "GPU telemetry per interval",
    "distribution": "HDR percentile distribution of latency",
    "classes-by-class": "Latency by model/path",
}


def _chromium(chromium: str, tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [chromium, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
         f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True, text=True, timeout=120)


def _render(chromium: str, html_path, tmp_path) -> dict[str, str]:
    """{figure key: 'yes'|'no'} as the browser saw it; asserts the probe ran on every figure."""
    probe = tmp_path / ("probe-" + html_path.name)
    probe.write_text(html_path.read_text().replace("</body>", PROBE + "</body>"))
    p = _chromium(chromium, tmp_path, "--dump-dom", probe.as_uri())
    assert p.returncode == 0, p.stderr[-2000:]
    dom = p.stdout
    figures = dict(re.findall(r'<figure id="fig-([\w-]+)" data-rendered="(yes|no)"', dom))
    checked = re.search(r'data-figures-checked="(\d+)"', dom)
    assert checked and int(checked.group(1)) == len(figures) == dom.count("<figure"), dom[-3000:]
    assert figures.pop("decoy-img") == "no" and figures.pop("decoy-svg") == "no"
    return figures


def _captions(html_path) -> dict[str, str]:
    doc = html_path.read_text()
    return dict(re.findall(r'<figure id="fig-([\w-]+)">.*?<figcaption>(.*?)</figcaption>', doc,
                           flags=re.S))


def _assert_not_blank(chromium: str, html_path, tmp_path) -> None:
    shot = tmp_path / (html_path.stem + ".png")
    p = _chromium(chromium, tmp_path, f"--screenshot={shot}", "--window-size=1100,2400",
                  html_path.as_uri())
    assert p.returncode == 0 and shot.exists(), p.stderr[-2000:]
    try:
        from PIL import Image
    except ImportError:  # matplotlib brings Pillow, but stay honest without it
        assert shot.stat().st_size > 20_000
        return
    with Image.open(shot) as im:
        rgb = im.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 20) or []
        inked = sum(n for n, c in colours if sum(c) < 3 * 235)
        assert len(colours) > 50, f"{shot}: {len(colours)} colours: blank?"
        assert inked / (rgb.width * rgb.height) > 0.01, f"{shot}: almost nothing drawn"


def _check(chromium, result, contents, name, tmp_path, expected: set[str]) -> None:
    out = tmp_path / f"{name}.html"
    write_html(result, out, runlog_contents=contents)
    rendered = _render(chromium, out, tmp_path)
    assert expected <= set(rendered), (name, sorted(rendered))
    assert all(v == "yes" for v in rendered.values()), (name, rendered)
    captions = _captions(out)
    for key in expected:
        assert captions[key].startswith(CAPTIONS[key]), (key, captions[key])
    _assert_not_blank(chromium, out, tmp_path)


def test_run_report_renders(chromium, report_files, tmp_path):
    result, contents = report.load_with_runlog(report_files.run_runlog)
    _check(chromium, result, contents, "run", tmp_path,
           {"rates", "latency-series", "distribution"})


def test_search_report_renders(chromium, report_files, tmp_path):
    result = report.load(report_files.search_json)
    expected = {"latency-vs-rate", "trajectory", "rates", "latency-series"}
    if any(s.get("distribution_ms") for s in result["steps"]):
        expected.add("distribution")
    _check(chromium, result, None, "search", tmp_path, expected)


def test_search_report_with_gpu_and_classes_renders(chromium, report_files, tmp_path):
    """The real search, with GPU telemetry and per-class latency added by hand (no GPU and no
    trace here): every kind of figure must render."""
    result = report.load(report_files.search_json)
    for iv in result["intervals"]:
        rate = iv.get("rate_rps") or 0.0
        iv["gpu"] = {str(dev): {"util_pct": min(100.0, rate / 20 / (dev + 1)),
                                "power_w": 90.0 + rate / 8, "mem_used_mib": 30000.0 + rate,
                                "mem_total_mib": 81559.0} for dev in range(2)}
    for s in result["steps"]:
        power_w = 100.0 + s["rate_rps"] / 8
        s["gpu"] = {"util_pct": min(100.0, s["rate_rps"] / 20), "power_w": power_w,
                    "mem_used_mib": 31000.0, "rps_per_gpu": s["rate_rps"] / 2,
                    "rps_per_w": s["rate_rps"] / power_w, "devices": {}}
        s["by_class"] = {"resnet50": {"completed": 900, "latency_ms": {"p50": 1.2, "p99": 9.0}},
                         "bert": {"completed": 300, "latency_ms": {"p50": 3.1, "p99": 19.0}}}
    _check(chromium, result, None, "search-gpu", tmp_path, set(CAPTIONS))
