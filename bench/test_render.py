#!/usr/bin/env python3
"""`bench/run --render` over a small latest.json: the README block, latest.md and latency.svg.

Runs no benchmark (CI must not): it renders a fixture written here and checks what a reader gets.
`scripts/test` runs it; alone: `python3 bench/test_render.py`.
"""

import copy
import json
import subprocess
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET
from pathlib import Path

BENCH_RUN = Path(__file__).resolve().parent / "run"
SVG = "{http://www.w3.org/2000/svg}"

README = """# project

Prose before the table that must survive.

<!-- bench:begin -->
an old table
| a | b |
<!-- bench:end -->

Goals, honestly: prose after the table that must survive too.
"""


def point(rate, p50, p99, sustained=True, achieved=None):
    return {"rate": rate, "achieved": achieved if achieved is not None else rate * 0.999,
            "p50_ms": p50, "p99_ms": p99, "p999_ms": p99 * 1.4, "cpu_us": 40.0,
            "sustained": sustained}


def row(config, rps, cpu, curve, **extra):
    r = {"config": config, "rps": rps, "p50_ms": curve[1]["p50_ms"], "p99_ms": curve[1]["p99_ms"],
         "p999_ms": curve[1]["p999_ms"], "rss_mib": 20.5, "cpu_us": cpu, "cpu_us_spread": 0.02,
         "curve": curve,
         "not_sustained_from": next((p["rate"] for p in curve if not p["sustained"]), None)}
    r.update(extra)
    return r


RATES = [12000, 24000, 36000]
FIXTURE = {
    "generated": "2026-12-06 05:00 UTC",
    "machine": {"cores": 2, "cpu": "Test CPU", "loadavg_before": ["0.1", "0.2", "0.3"],
                "loadavg_after": ["1.0", "1.1", "1.2"]},
    "settings": {"duration_s": 6.0, "curve_duration_s": 4.0, "warmup_s": 1.0, "connections": 64,
                 "loadgen_threads": 2, "repeats": 3, "base_rate": 48000, "base_rate_from": "nginx",
                 "curve_fractions": [0.25, 0.5, 0.75], "table_rate": 24000,
                 "sustained_share": 0.95},
    "curve_rates": RATES,
    "seconds": {"build": 10, "measure": 1100},
    "otlp_sink": {"posts": 120, "bytes": 3500000},
    "results": [
        row("nginx", 48000.0, 25.7,
            [point(12000, 0.4, 2.0), point(24000, 0.7, 7.5), point(36000, 1.1, 15.0)],
            cpu_user_us=6.2, cpu_sys_us=19.5),
        row("portcullis-full", 31000.0, 45.6,
            [point(12000, 0.9, 4.0), point(24000, 18.9, 217.0),
             point(36000, 900.0, 2500.0, sustained=False, achieved=30100.0)],
            cpu_user_us=20.0, cpu_sys_us=25.6),
        row("portcullis-full-no-otel", 31500.0, 45.0,
            [point(12000, 0.9, 4.1), point(24000, 18.0, 210.0),
             point(36000, 880.0, 2400.0, sustained=False, achieved=30500.0)]),
        row("portcullis-mtls", 26000.0, 47.6,
            [point(12000, 1.0, 5.0), point(24000, 280.0, 740.0, sustained=False, achieved=22000.0),
             point(36000, 1200.0, 3000.0, sustained=False, achieved=25000.0)],
            handshake_rps=2100.0, handshake_cpu_us=610.0, handshake_cpu_us_spread=0.04,
            handshake_p99_ms=60.0),
        row("portcullis-mtls-workload-api", 25800.0, 48.0,
            [point(12000, 1.0, 5.2), point(24000, 285.0, 750.0, sustained=False, achieved=21900.0),
             point(36000, 1250.0, 3100.0, sustained=False, achieved=24800.0)],
            handshake_rps=2080.0, handshake_cpu_us=615.0, handshake_cpu_us_spread=0.05,
            handshake_p99_ms=61.0),
        {"config": "portcullis-full-otel",
         "error": "portcullis check refused the config (exit 2): a | b\nsecond line"},
    ],
}


# Every rendering's directory, removed when the tests end.
SCRATCH = tempfile.TemporaryDirectory(prefix="bench-render-")


def render(doc, readme=README, results=None):
    """Run `bench/run --render` in a fresh directory; returns (process, directory)."""
    d = Path(results or tempfile.mkdtemp(dir=SCRATCH.name))
    (d / "latest.json").write_text(json.dumps(doc))
    if readme is not None:
        (d / "README.md").write_text(readme)
    p = subprocess.run([sys.executable, str(BENCH_RUN), "--render", "--results", str(d),
                        "--readme", str(d / "README.md")],
                       capture_output=True, text=True, timeout=60)
    return p, d


def table_rows(md, first_cell):
    return [line for line in md.splitlines() if line.startswith(f"| {first_cell} |")]


class RenderTest(unittest.TestCase):
    def rendered(self, results):
        """The fixture with `results` instead of its own, rendered: (latest.md, directory)."""
        p, d = render(dict(FIXTURE, results=results))
        self.assertEqual(p.returncode, 0, p.stderr)
        return (d / "latest.md").read_text(), d

    def setUp(self):
        self.p, self.d = render(FIXTURE)
        self.assertEqual(self.p.returncode, 0, self.p.stderr)
        self.md = (self.d / "latest.md").read_text()
        self.readme = (self.d / "README.md").read_text()
        self.svg = (self.d / "latency.svg").read_text()

    def test_readme_block_is_rewritten_and_the_prose_around_it_kept(self):
        before, rest = README.split("<!-- bench:begin -->")
        _, after = rest.split("<!-- bench:end -->")
        self.assertTrue(self.readme.startswith(before), self.readme)
        self.assertTrue(self.readme.endswith(after), self.readme)
        self.assertEqual(self.readme.count("<!-- bench:begin -->"), 1)
        self.assertEqual(self.readme.count("<!-- bench:end -->"), 1)
        self.assertNotIn("an old table", self.readme)
        self.assertIn("2026-12-06 05:00 UTC", self.readme)
        self.assertIn("](bench/results/latency.svg)", self.readme)
        self.assertIn("](bench/results/latest.md)", self.readme)
        for r in FIXTURE["results"]:
            rows = table_rows(self.readme, r["config"])
            # The main table, and the handshake table for the two mTLS rows (issue 17's figures).
            self.assertEqual(len(rows), 2 if "handshake_rps" in r else 1, rows)
        self.assertIn("| portcullis-mtls-workload-api | 2,080 | 0.99 | 615.0 | 1.01 |", self.readme)
        # Rendering again changes nothing: the block is replaced, not appended to.
        p, _ = render(FIXTURE, readme=self.readme, results=self.d)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual((self.d / "README.md").read_text(), self.readme)

    def test_markdown_has_every_table_with_ratios_curve_and_handshakes(self):
        self.assertIn("## portcullis side-by-side benchmark (2026-12-06 05:00 UTC)", self.md)
        self.assertIn("2 cores (Test CPU)", self.md)
        self.assertIn("12,000, 24,000, 36,000 req/s", self.md)
        main = table_rows(self.md, "portcullis-full")
        self.assertEqual(len(main), 3, main)  # the main, curve and user/kernel tables
        cells = [c.strip() for c in main[0].strip("|").split("|")]
        self.assertEqual(cells[1], "31,000")
        self.assertEqual(cells[2], "0.65")  # × nginx
        self.assertEqual(cells[9], "1.77")  # CPU × nginx
        curve = main[1]
        self.assertIn("**not sustained**", curve)
        self.assertTrue(curve.rstrip(" |").endswith("36,000 req/s"), curve)
        nginx_curve = table_rows(self.md, "nginx")[1]
        self.assertIn("none up to 36,000", nginx_curve)
        hs = table_rows(self.md, "portcullis-mtls-workload-api")
        self.assertIn("2,080", hs[-1])
        self.assertIn("615.0", hs[-1])
        # The A/B statements the issues ask for, with a verdict.
        self.assertIn("portcullis-full vs portcullis-full-no-otel, CPU per request: 45.6 vs 45.0 µs"
                      " = 1.01× (within noise", self.md)
        self.assertIn("CPU per handshake: 615.0 vs 610.0 µs = 1.01× (within noise", self.md)
        self.assertIn("portcullis-full-otel vs portcullis-full: not measured "
                      "(portcullis-full-otel: portcullis check refused", self.md)
        self.assertIn("nginx-keyauth not in this run", self.md)

    def test_an_error_with_a_pipe_and_a_newline_stays_in_its_cell(self):
        for text in (self.md, self.readme):
            err = table_rows(text, "portcullis-full-otel")[0]  # the main table's row
            self.assertEqual(err.count("|") - err.count("\\|"), 13, err)
            self.assertIn("a \\| b second line", err)

    def test_svg_is_well_formed_with_a_line_per_configuration_and_a_legend(self):
        root = ET.fromstring(self.svg)
        self.assertEqual(root.tag, f"{SVG}svg")
        lines = root.findall(f"{SVG}polyline")
        curved = [r for r in FIXTURE["results"] if r.get("curve")]
        self.assertEqual(len(lines), 2 * len(curved))  # p99 solid, p50 dashed
        self.assertEqual(sum(1 for l in lines if l.get("stroke-dasharray")), len(curved))
        texts = [t.text for t in root.iter(f"{SVG}text")]
        for r in curved:
            self.assertIn(r["config"], texts)
        self.assertNotIn("portcullis-full-otel", texts)  # an error row has no line
        self.assertIn("1 ms", texts)
        self.assertIn("1,000 ms", texts)  # log axis up to the 3,100 ms point
        self.assertIn("36,000 (75%)", texts)
        hollow = [c for c in root.iter(f"{SVG}circle") if c.get("fill") == "#ffffff"]
        unsustained = sum(1 for r in curved for p in r["curve"] if not p["sustained"])
        self.assertEqual(len(hollow), 2 * unsustained)
        width, height = float(root.get("width")), float(root.get("height"))
        for c in root.iter(f"{SVG}circle"):
            self.assertTrue(0 <= float(c.get("cx")) <= width and 0 <= float(c.get("cy")) <= height)

    def test_svg_is_deterministic(self):
        p, d = render(FIXTURE)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual((d / "latency.svg").read_text(), self.svg)
        self.assertEqual((d / "latest.md").read_text(), self.md)

    def test_a_config_name_with_markup_is_escaped(self):
        doc = copy.deepcopy(FIXTURE)
        doc["results"][0]["config"] = "<script>&nginx"
        p, d = render(doc)
        self.assertEqual(p.returncode, 0, p.stderr)
        root = ET.fromstring((d / "latency.svg").read_text())
        self.assertIn("<script>&nginx", [t.text for t in root.iter(f"{SVG}text")])

    def test_a_curve_point_without_figures_is_drawn_around(self):
        # A run that failed at one rate (loadgen error), and one whose percentiles were null
        # (no answer at all: loadgen prints NaN, which JSON holds as null) or zero.
        doc = copy.deepcopy(FIXTURE)
        curve = doc["results"][1]["curve"]
        curve[0] = {"rate": 12000, "achieved": None, "p50_ms": None, "p99_ms": None,
                    "p999_ms": None, "cpu_us": None, "sustained": False, "error": "loadgen failed"}
        curve[2].update(p50_ms=0.0, p99_ms=None)
        p, d = render(doc)
        self.assertEqual(p.returncode, 0, p.stderr)
        root = ET.fromstring((d / "latency.svg").read_text())
        self.assertTrue(all("nan" not in (l.get("points") or "").lower()
                            for l in root.iter(f"{SVG}polyline")))
        row = table_rows((d / "latest.md").read_text(), "portcullis-full")[1]
        self.assertTrue(row.startswith("| portcullis-full | – |"), row)
        self.assertTrue(row.rstrip(" |").endswith("12,000 req/s"), row)

    def test_readme_without_markers_is_refused_and_left_alone(self):
        readme = "# project\n\nno markers here\n"
        p, d = render(FIXTURE, readme=readme)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("bench:begin", p.stderr)
        self.assertEqual((d / "README.md").read_text(), readme)

    def test_a_results_file_that_is_not_a_benchmark_is_refused(self):
        for bad in ({"rows": []}, "text", {"results": "x"}):
            p, _ = render(bad)
            self.assertNotEqual(p.returncode, 0, bad)
            self.assertNotIn("Traceback", p.stderr)

    def test_cpu_is_split_into_user_and_kernel_and_judged_against_the_goals(self):
        section = self.md.split("### Where the CPU goes", 1)[1].split("###", 1)[0]
        rows = [line for line in section.splitlines() if line.startswith("| ")][2:]
        # Only the rows that recorded the split (not an older run's, not an error's: no zeros).
        self.assertEqual([r.split("|")[1].strip() for r in rows], ["nginx", "portcullis-full"])
        cells = [c.strip() for c in rows[1].strip("|").split("|")]
        # user, user × nginx, kernel, kernel × nginx, user share
        self.assertEqual(cells[1:], ["20.0", "3.23", "25.6", "1.31", "44%"])
        for text in (self.md, self.readme):
            self.assertIn("Where the CPU per request goes (user-space + kernel µs): nginx 6.2 + 19.5;"
                          " portcullis-full 20.0 + 25.6.", text)
        self.assertIn("- portcullis-full CPU/request ≤ 1.15× nginx: 1.77× → MISSED", self.md)
        self.assertIn("- portcullis-pass CPU/request vs nginx: not measured", self.md)

    def test_a_cpu_goal_says_whether_it_was_met_or_missed_by_more_than_the_noise(self):
        # 45.6 / 25.7 = 1.77× against 1.15: 54% off. The fixture's rows have no spread, so the
        # noise is the floor (3%).
        self.assertIn("- portcullis-full CPU/request ≤ 1.15× nginx: 1.77× → MISSED (+54% from the "
                      "goal, beyond this run's noise of 3%)", self.md)
        curve = [point(12000, 0.3, 1.0), point(24000, 0.5, 2.5), point(36000, 0.9, 9.0)]
        near = dict(FIXTURE, results=[
            dict(r, cpu_us_spread=0.05) if r["config"] == "nginx" else r
            for r in FIXTURE["results"]] + [
            # 26.5 / 25.7 = 1.03×: missed by 3%, within nginx's 5% spread.
            row("portcullis-pass", 45000.0, 26.5, curve, cpu_us_spread=0.02),
            # 28.0 / 25.7 = 1.09×: met by 5% (1.09 / 1.15 - 1), within its own 12% spread.
            row("portcullis-full-pgo", 49000.0, 28.0, curve, cpu_us_spread=0.12)])
        p, d = render(near)
        self.assertEqual(p.returncode, 0, p.stderr)
        md = (d / "latest.md").read_text()
        self.assertIn("- portcullis-pass CPU/request ≤ 1.00× nginx: 1.03× → MISSED (+3% from the "
                      "goal, within this run's noise of 5%)", md)
        self.assertIn("- portcullis-full-pgo CPU/request ≤ 1.15× nginx: 1.09× → met (-5% from the "
                      "goal, within this run's noise of 12%)", md)

    def test_the_profile_guided_rows_are_judged_against_the_same_goals(self):
        # No -pgo row: no -pgo goal (an older run keeps its lines).
        self.assertNotIn("-pgo CPU/request", self.md.split("Goals:", 1)[1])
        curve = [point(12000, 0.3, 1.0), point(24000, 0.5, 2.5), point(36000, 0.9, 9.0)]
        pgo = [row("portcullis-pass", 45000.0, 30.0, curve, cpu_user_us=9.0, cpu_sys_us=21.0),
               row("portcullis-pass-pgo", 47000.0, 24.0, curve, cpu_user_us=4.5, cpu_sys_us=19.5),
               row("portcullis-full-pgo", 49000.0, 29.0, curve, cpu_user_us=8.0, cpu_sys_us=21.0),
               {"config": "portcullis-ldap-pgo", "error": "scripts/build-pgo failed: no python3"}]
        p, d = render(dict(FIXTURE, results=FIXTURE["results"] + pgo))
        self.assertEqual(p.returncode, 0, p.stderr)
        md = (d / "latest.md").read_text()
        # 24.0 / 25.7 and 29.0 / 25.7; throughput 49000 / 48000; p99 2.5 / 7.5.
        self.assertIn("- portcullis-pass-pgo CPU/request ≤ 1.00× nginx: 0.93× → met", md)
        self.assertIn("- portcullis-full-pgo CPU/request ≤ 1.15× nginx: 1.13× → met", md)
        self.assertIn("- portcullis-full-pgo ≥ 1.0× nginx throughput: 1.02× → met", md)
        self.assertIn("- portcullis-full-pgo p99 ≤ 1.25× nginx: 0.33× → met", md)
        self.assertIn("- portcullis-ldap-pgo vs apache-ldap: not measured", md)
        # The plain build's goals are still there, judged on their own rows.
        self.assertIn("- portcullis-full CPU/request ≤ 1.15× nginx: 1.77× → MISSED", md)
        self.assertIn("- portcullis-pass CPU/request ≤ 1.00× nginx: 1.17× → MISSED", md)
        self.assertIn("The profile-guided build (`scripts/build-pgo`) against the plain release "
                      "build: portcullis-pass-pgo vs portcullis-pass, CPU per request: 24.0 vs "
                      "30.0 µs = 0.80×", md)
        self.assertIn("The profile-guided build's CPU per request (user-space + kernel µs): "
                      "portcullis-pass-pgo 4.5 + 19.5; portcullis-full-pgo 8.0 + 21.0.", md)

    def test_new_plain_connections_are_a_table_against_nginx_only_when_measured(self):
        # The fixture measured none: no table, no statement (an older latest.json renders as it
        # did).
        self.assertNotIn("A new plain connection per request", self.md)
        self.assertNotIn("CPU per new connection", self.md)
        plain = {"nginx": (20000.0, 30.0), "portcullis-full": (19000.0, 45.0)}
        results = [dict(r, handshake_rps=plain[r["config"]][0],
                        handshake_cpu_us=plain[r["config"]][1], handshake_cpu_us_spread=0.04,
                        handshake_p99_ms=9.0) if r["config"] in plain else r
                   for r in FIXTURE["results"]]
        md, d = self.rendered(results)
        self.assertIn("### A new plain connection per request (clients without keep-alive)", md)
        self.assertIn("| config | connections/s | × nginx | CPU µs/connection | × nginx |", md)
        full = [c.strip() for c in table_rows(md, "portcullis-full")[-1].strip("|").split("|")]
        self.assertEqual(full[1:5], ["19,000", "0.95", "45.0", "1.50"], full)
        # The TLS table keeps its own reference.
        self.assertIn("| config | handshakes/s | × portcullis-mtls |", md)
        self.assertIn("portcullis-full vs nginx, CPU per new connection: 45.0 vs 30.0 µs = 1.50×"
                      " (above noise", md)
        self.assertIn("A new plain connection per request (clients without keep-alive):",
                      (d / "README.md").read_text())

    def test_an_older_latest_json_without_curve_still_renders(self):
        old = [{k: v for k, v in r.items() if k not in ("curve", "not_sustained_from")}
               for r in FIXTURE["results"]]
        p, d = render(old)
        self.assertEqual(p.returncode, 0, p.stderr)
        ET.fromstring((d / "latency.svg").read_text())
        self.assertIn("no latency curve", (d / "latest.md").read_text())
        no_split = [{k: v for k, v in r.items() if k not in ("cpu_user_us", "cpu_sys_us")}
                    for r in FIXTURE["results"]]
        md, _ = self.rendered(no_split)
        self.assertNotIn("Where the CPU goes", md)
        self.assertNotIn("Where the CPU per request goes", md)


if __name__ == "__main__":
    unittest.main(verbosity=2)
