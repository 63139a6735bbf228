"""`crestline trace import` and `crestline trace info` end to end."""

import json

from cli_process import crestline


def test_import_then_info(tmp_path):
    src = tmp_path / "requests.jsonl"
    src.write_text("".join(
        json.dumps({"t": 100 + i * 0.01, "method": "POST", "path": f"/v2/models/m{i % 2}/infer",
                    "headers": {"content-type": "application/json"}, "body": "{}"}) + "\n"
        for i in range(1000)))
    out = tmp_path / "t.cltrace"
    p = crestline("trace", "import", str(src), "-o", str(out))
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"wrote 1,000 requests over 9.990 s to {out}"
    p = crestline("trace", "info", str(out))
    assert p.returncode == 0, p.stderr
    assert "1,000 over 9.990 s" in p.stdout and "m0" in p.stdout and "dispersion" in p.stdout
    p = crestline("trace", "info", str(out), "--json")
    d = json.loads(p.stdout)
    assert d["count"] == 1000 and d["source"] == "jsonl:requests.jsonl"
    assert {r["model"] for r in d["by_model"]["top"]} == {"m0", "m1"}


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_text('{"t": 0, "path": "/"}\n{"t": "x", "path": "/"}\n')
    out = tmp_path / "t.cltrace"
    p = crestline("trace", "import", str(src), "-o", str(out))
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("crestline: error: ")
    assert "line 2" in p.stderr
    assert not out.exists()

    p = crestline("trace", "info", str(src))
    assert p.returncode == 2 and p.stderr.count("\n") == 1
    assert "not a crestline trace" in p.stderr

    p = crestline("trace", "import", str(src))
    assert p.returncode == 2 and "-o/--out" in p.stderr
