"""The demo's sample project: a tiny statistics library, its tests, and eight prepared changes.

The Mayor's canned plan splits "build the library" into eight beads with dependencies; the
scripted agent applies the prepared change of its bead. One change (percentile) is broken
on the first try: the merge queue's tests catch it, the bisection isolates it, the bead goes
back to its polecat with the failing test's output, and the second try applies the fix.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field

SEED = {
    "README.md": "# stats\n\nA tiny statistics library, built by a convoy of agents.\n\n"
                 "Run the tests with `python -m unittest discover -s tests`.\n",
    "stats/__init__.py": '"""A tiny statistics library."""\n',
    "tests/__init__.py": "",
    "tests/test_package.py": "import unittest\n\nimport stats\n\n\n"
                             "class Package(unittest.TestCase):\n"
                             "    def test_it_imports(self):\n"
                             "        self.assertIn(\"statistics\", stats.__doc__)\n",
}

GATE_ARGS = ["-m", "unittest", "discover", "-s", "tests", "-t", "."]  # after a python


def _test(name: str, body: str) -> str:
    return f"import unittest\n\n{body.strip()}\n\n\nclass Test{name.title()}(unittest.TestCase):\n"


@dataclass(frozen=True)
class Change:
    key: str
    title: str
    description: str
    needs: tuple[str, ...]
    _: KW_ONLY
    files: dict[str, str]
    fixed: dict[str, str] = field(default_factory=dict)  # a second try, after a rejection

    def plan_entry(self) -> dict:
        return {"key": self.key, "title": self.title, "description": self.description, "needs": list(self.needs)}


CHANGES = [
    Change("mean", "Arithmetic mean", "stats.mean(xs): the arithmetic mean; ValueError on an empty list.", (), files={
        "stats/mean.py": "def mean(xs):\n    if not xs:\n        raise ValueError(\"mean of an empty list\")\n"
                         "    return sum(xs) / len(xs)\n",
        "tests/test_mean.py": _test("mean", "from stats.mean import mean")
        + "    def test_mean(self):\n        self.assertEqual(mean([1, 2, 3, 4]), 2.5)\n\n"
          "    def test_empty(self):\n        with self.assertRaises(ValueError):\n            mean([])\n"}),
    Change("median", "Median", "stats.median(xs): the middle value (the mean of the two middle ones).", (), files={
        "stats/median.py": "def median(xs):\n    s = sorted(xs)\n    n = len(s)\n    if n == 0:\n"
                           "        raise ValueError(\"median of an empty list\")\n"
                           "    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2\n",
        "tests/test_median.py": _test("median", "from stats.median import median")
        + "    def test_odd(self):\n        self.assertEqual(median([3, 1, 2]), 2)\n\n"
          "    def test_even(self):\n        self.assertEqual(median([4, 1, 3, 2]), 2.5)\n"}),
    Change("mode", "Mode", "stats.mode(xs): the most common value (the smallest on a tie).", (), files={
        "stats/mode.py": "from collections import Counter\n\n\ndef mode(xs):\n    counts = Counter(xs)\n"
                         "    top = max(counts.values())\n    return min(x for x, c in counts.items() if c == top)\n",
        "tests/test_mode.py": _test("mode", "from stats.mode import mode")
        + "    def test_mode(self):\n        self.assertEqual(mode([1, 2, 2, 3]), 2)\n\n"
          "    def test_tie(self):\n        self.assertEqual(mode([3, 1, 3, 1]), 1)\n"}),
    Change("variance", "Variance", "stats.variance(xs): the population variance, using stats.mean.", ("mean",), files={
        "stats/variance.py": "from stats.mean import mean\n\n\ndef variance(xs):\n    m = mean(xs)\n"
                             "    return sum((x - m) ** 2 for x in xs) / len(xs)\n",
        "tests/test_variance.py": _test("variance", "from stats.variance import variance")
        + "    def test_variance(self):\n        self.assertEqual(variance([2, 4, 4, 4, 5, 5, 7, 9]), 4)\n"}),
    Change("stdev", "Standard deviation", "stats.stdev(xs): the square root of the variance.", ("variance",), files={
        "stats/stdev.py": "import math\n\nfrom stats.variance import variance\n\n\ndef stdev(xs):\n"
                          "    return math.sqrt(variance(xs))\n",
        "tests/test_stdev.py": _test("stdev", "from stats.stdev import stdev")
        + "    def test_stdev(self):\n        self.assertEqual(stdev([2, 4, 4, 4, 5, 5, 7, 9]), 2)\n"}),
    Change("percentile", "Percentile", "stats.percentile(xs, p): the nearest-rank percentile, p in 0..100.", (), files={
        # the first try forgets to sort and is off by one: the tests catch it
        "stats/percentile.py": "def percentile(xs, p):\n    return xs[int(len(xs) * p / 100)]\n",
        "tests/test_percentile.py": _test("percentile", "from stats.percentile import percentile")
        + "    def test_median_rank(self):\n        self.assertEqual(percentile([15, 20, 35, 40, 50], 40), 20)\n\n"
          "    def test_ends(self):\n        self.assertEqual(percentile([3, 1, 2], 0), 1)\n"
          "        self.assertEqual(percentile([3, 1, 2], 100), 3)\n"},
        fixed={"stats/percentile.py": "import math\n\n\ndef percentile(xs, p):\n    s = sorted(xs)\n"
                                      "    rank = max(1, math.ceil(len(s) * p / 100))\n    return s[rank - 1]\n"}),
    Change("summary", "Summary", "stats.summary(xs): a dict of count, mean, median and stdev.",
           ("mean", "median", "stdev"), files={
        "stats/summary.py": "from stats.mean import mean\nfrom stats.median import median\n"
                            "from stats.stdev import stdev\n\n\ndef summary(xs):\n"
                            "    return {\"count\": len(xs), \"mean\": mean(xs), \"median\": median(xs), "
                            "\"stdev\": stdev(xs)}\n",
        "tests/test_summary.py": _test("summary", "from stats.summary import summary")
        + "    def test_summary(self):\n        s = summary([2, 4, 4, 4, 5, 5, 7, 9])\n"
          "        self.assertEqual((s[\"count\"], s[\"mean\"], s[\"median\"], s[\"stdev\"]), (8, 5, 4.5, 2))\n"}),
    Change("cli", "Command line", "python -m stats 1 2 3: prints the summary of the numbers given.", ("summary",), files={
        "stats/__main__.py": "import sys\n\nfrom stats.summary import summary\n\n\ndef main(argv):\n"
                             "    s = summary([float(a) for a in argv])\n"
                             "    return \" \".join(f\"{k}={v:g}\" for k, v in s.items())\n\n\n"
                             "if __name__ == \"__main__\":\n    print(main(sys.argv[1:]))\n",
        "tests/test_cli.py": _test("cli", "from stats.__main__ import main")
        + "    def test_main(self):\n        self.assertEqual(main([\"1\", \"2\", \"3\"]), "
          "\"count=3 mean=2 median=2 stdev=0.816497\")\n"}),
]

GOAL = ("Build a small statistics library in the stats package: mean, median, mode, variance, "
        "standard deviation, percentile, a summary, and a command line. Each with unit tests.")
BROKEN = "percentile"


def plan() -> dict:
    return {"beads": [c.plan_entry() for c in CHANGES]}


def change_titled(title: str) -> Change | None:
    return next((c for c in CHANGES if c.title == title), None)


def change_keyed(key: str) -> Change | None:
    return next((c for c in CHANGES if c.key == key), None)
