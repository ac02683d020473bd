"""Known vulnerabilities in the installed environment, with pip-audit: exit 1 when a dependency has
one; exit 0, with a loud NOT AUDITED line, when the vulnerability service cannot answer (no network,
or an index mirror without PyPI's per-version JSON API), so that CI fails on findings, never on the
network. See docs/security.md.

    python tools/audit_dependencies.py [--strict]   --strict: dependencies that could not be audited fail too
"""
from __future__ import annotations

import json
import subprocess  # nosec B404
import sys
import tempfile
from pathlib import Path


def main(argv: list[str]) -> int:
    strict = "--strict" in argv
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "audit.json"
        try:  # Bandit B404/B603: pip-audit from this environment, with fixed arguments and no shell
            run = subprocess.run(  # nosec B603
                [sys.executable, "-m", "pip_audit", "--skip-editable", "--progress-spinner", "off", "--timeout", "15",
                 "--format", "json", "--output", str(report)],
                capture_output=True, text=True, timeout=300)
            failure = f"exit {run.returncode}: {run.stderr.strip()[-500:]}"
        except subprocess.TimeoutExpired:
            failure = "no answer within 300 s"
        if not report.is_file():
            print(f"NOT AUDITED: pip-audit could not finish ({failure})")
            return 1 if strict else 0
        dependencies = json.loads(report.read_text())["dependencies"]
    vulnerable = [d for d in dependencies if d.get("vulns")]
    skipped = [d for d in dependencies if "skip_reason" in d]
    for d in vulnerable:
        for v in d["vulns"]:
            fixed = ", ".join(v.get("fix_versions", [])) or "no fixed version yet"
            print(f"VULNERABLE: {d['name']} {d['version']}: {v['id']} (fixed in {fixed})")
    audited = len(dependencies) - len(skipped)
    print(f"pip-audit: {audited} of {len(dependencies)} dependencies audited, {len(vulnerable)} with known vulnerabilities")
    if skipped:
        print(f"NOT AUDITED: {len(skipped)} dependencies, e.g. {skipped[0]['skip_reason']}")
    if vulnerable or (strict and skipped):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
