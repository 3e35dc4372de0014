"""A class run's summary: the score distribution, the rubric's categories the class lost most
in, and the checks failed most often.

tests/grade.py writes OUT/class-summary.md and OUT/scores.svg (a bar chart of the
distribution, drawn here: no plotting library, and any browser shows it).
"""

import json
from html import escape
from pathlib import Path

import report

BANDS = [(0, 10), (10, 20), (20, 30), (30, 40), (40, 50), (50, 60), (60, 70), (70, 80), (80, 90), (90, 100),
         (100, 101)]


def band_label(low, high):
    return "100 %" if low == 100 else f"{low}-{high - 1} %"


def percent(row):
    return 0 if not row["max_score"] else 100 * row["score"] / row["max_score"]


def distribution(rows):
    """(label, number of students) per band of percent of the points, 100 % apart."""
    counts = []
    for low, high in BANDS:
        counts.append((band_label(low, high), sum(1 for row in rows if low <= percent(row) < high)))
    return counts


def most_failed(out, rows):
    """(check, students who failed it), most often first. A broken gate counts once, as its cause,
    not as each check it stopped."""
    failed = {}
    for row in rows:
        path = Path(out) / row["student"] / "results.json"
        if row["max_score"] is None or not path.is_file():
            name = row["failed"] if row["failed"].startswith("not graded") else "not graded"
            failed[name] = failed.get(name, 0) + 1
            continue
        tests = json.loads(path.read_text())["tests"]
        causes, _ = report.causes(tests)
        names = {f"CAUSE: {cause.split('. ', 1)[0]}" for cause in causes}
        names |= {test["name"].split(" · ", 1)[-1] for test in report.checks(tests)
                  if test["status"] == "failed" and not report.extra(test, "not_run")
                  and not report.extra(test, "cause")}
        for name in names:
            failed[name] = failed.get(name, 0) + 1
    return sorted(failed.items(), key=lambda item: (-item[1], item[0]))


def lost_by_category(rows):
    """(category, weight, the class's mean points, share of the weight lost), most lost first,
    over the students who were graded."""
    graded = [row for row in rows if row.get("categories")]
    found = {}
    for row in graded:
        for name, (points, weight) in row["categories"].items():
            found.setdefault(name, [weight, []])[1].append(points)
    table = [(name, weight, sum(points) / len(points), 1 - sum(points) / len(points) / weight if weight else 0)
             for name, (weight, points) in found.items()]
    return sorted(table, key=lambda entry: (-entry[3], entry[0]))


def markdown(out, rows, stage, seed, top=15):
    scores = sorted(percent(row) for row in rows)
    median = scores[len(scores) // 2] if scores else 0
    lines = [f"# Stage {stage}: {len(rows)} submissions", "",
             f"Seed {seed}. Full marks: {sum(1 for row in rows if percent(row) == 100)}; "
             f"median {median:.0f} %; not graded (score 0): {sum(1 for row in rows if row['max_score'] is None)}; "
             f"flagged: {sum(1 for row in rows if row.get('flags'))}.", "",
             "![The score distribution](scores.svg)", "",
             "| Points | Students |", "| --- | ---: |"]
    lines += [f"| {label} | {count} |" for label, count in distribution(rows)]
    by_category = lost_by_category(rows)
    if by_category:
        lines += ["", "## Points lost by category (the rubric: tests/categories.py)", "",
                  f"The class lost most in **{by_category[0][0]}**.", "",
                  "| Category | Weight | Class mean | Lost |", "| --- | ---: | ---: | ---: |"]
        lines += [f"| {name} | {weight} | {mean:.1f} | {100 * lost:.0f} % |" for name, weight, mean, lost in by_category]
    lines += ["", f"## The checks failed most often (top {top})", "", "| Check | Students |", "| --- | ---: |"]
    lines += [f"| {name.replace('|', '/')} | {count} |" for name, count in most_failed(out, rows)[:top]]
    flagged = [row for row in rows if row.get("flags")]
    if flagged:
        lines += ["", "## Flagged (integrity: read these, the score is unchanged)", ""]
        lines += [f"- {row['student']}: {row['flags']}" for row in flagged]
    return "\n".join(lines) + "\n"


def svg(rows, stage, width=640, height=320):
    """A bar chart of the distribution, with a count above each bar and the band below it."""
    bands = distribution(rows)
    left, bottom, top = 40, 50, 40
    slot = (width - left - 10) / len(bands)
    tallest = max(1, *(count for _, count in bands))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15">Stage {escape(stage)}: '
             f'{len(rows)} submissions, students per band of points</text>',
             f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" y2="{height - bottom}" stroke="black"/>']
    for index, (label, count) in enumerate(bands):
        bar = (height - bottom - top) * count / tallest
        x = left + index * slot
        parts.append(f'<rect x="{x + 4:.1f}" y="{height - bottom - bar:.1f}" width="{slot - 8:.1f}" '
                     f'height="{bar:.1f}" fill="#3f51b5"><title>{escape(label)}: {count}</title></rect>')
        parts.append(f'<text x="{x + slot / 2:.1f}" y="{height - bottom - bar - 5:.1f}" '
                     f'text-anchor="middle">{count}</text>')
        parts.append(f'<text x="{x + slot / 2:.1f}" y="{height - bottom + 16}" text-anchor="middle" '
                     f'font-size="10">{escape(label)}</text>')
    parts.append(f'<text x="{width / 2}" y="{height - 12}" text-anchor="middle">share of the points</text>')
    return "\n".join(parts + ["</svg>"]) + "\n"


def write(out, rows, stage, seed):
    out = Path(out)
    (out / "class-summary.md").write_text(markdown(out, rows, stage, seed))
    (out / "scores.svg").write_text(svg(rows, stage))
