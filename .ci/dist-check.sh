#!/usr/bin/env bash
# make dist-check: build the wheel and sdist as a release would, check them, and install the
# wheel where a user would. Each check fails the run:
#   - `python -m build` makes both; `twine check --strict` passes;
#   - the wheel carries asyncperf/py.typed and no tests/ or bench/;
#   - in a clean virtualenv with no extras, `import asyncperf` works and `asyncperf demo`
#     runs its core part and names the extra the rest needs (asyncperf[demo]);
#   - with asyncperf[demo], the whole tour runs.
# Tools and dependencies come pinned from constraints.txt; the virtualenvs are throwaway.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
python=${PYTHON:-python3}
lock="$root/constraints.txt"
dist="$root/dist"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export PIP_DISABLE_PIP_VERSION_CHECK=1

step() { printf 'dist-check: %s\n' "$*"; }
fail() { printf 'dist-check: FAILED: %s\n' "$*" >&2; exit 1; }

step "build tools (pinned)"
"$python" -m venv "$work/tools"
"$work/tools/bin/python" -m pip install --quiet -c "$lock" build twine

step "python -m build (wheel and sdist)"
rm -rf "$dist"
# The build backend's isolated environment is pinned too (hatchling is in the lock).
PIP_CONSTRAINT="$lock" "$work/tools/bin/python" -m build --outdir "$dist" . >"$work/build.log" 2>&1 ||
  { cat "$work/build.log" >&2; fail "python -m build"; }
wheel=$(ls "$dist"/asyncperf-*.whl)
sdist=$(ls "$dist"/asyncperf-*.tar.gz)
step "built $(basename "$wheel") and $(basename "$sdist")"

step "twine check --strict"
"$work/tools/bin/twine" check --strict "$wheel" "$sdist"

step "wheel contents"
"$work/tools/bin/python" - "$wheel" <<'PY'
import sys
import zipfile

names = zipfile.ZipFile(sys.argv[1]).namelist()
problems = []
if "asyncperf/py.typed" not in names:
    problems.append("no asyncperf/py.typed")
stray = [n for n in names if n.split("/")[0] in ("tests", "bench", "docs")]
if stray:
    problems.append(f"carries {len(stray)} files of tests/bench/docs, e.g. {stray[0]}")
if not any(n.endswith("entry_points.txt") for n in names):
    problems.append("no entry_points.txt (the asyncperf command)")
if problems:
    sys.exit("dist-check: FAILED: wheel " + "; ".join(problems))
print(f"dist-check: wheel has {len(names)} files, py.typed, no tests or benchmarks")
PY

# Run the installed package from a directory outside the checkout, so that the checkout's
# asyncperf/ cannot shadow it.
cd "$work"
demo_args=(demo --requests 200 --keys 20 --latency-ms 1 --app-requests 60 --speed 50)

step "clean virtualenv, no extras"
"$python" -m venv "$work/bare"
"$work/bare/bin/python" -m pip install --quiet -c "$lock" "$wheel"
"$work/bare/bin/python" -c '
import asyncperf, sys
where = asyncperf.__file__
assert "/bare/" in where, f"imported {where}, not the installed wheel"
print(f"dist-check: import asyncperf {asyncperf.__version__} from the wheel works")
'
status=0
"$work/bare/bin/asyncperf" "${demo_args[@]}" >"$work/bare.out" 2>&1 || status=$?
[ "$status" -eq 0 ] || { cat "$work/bare.out" >&2; fail "asyncperf demo without extras exited $status"; }
grep -q "stampede: 1000 callers -> 1 backend load" "$work/bare.out" ||
  { cat "$work/bare.out" >&2; fail "asyncperf demo without extras did not run its core part"; }
hint=$(grep "needs .*asyncperf\[demo\]" "$work/bare.out") ||
  { cat "$work/bare.out" >&2; fail "asyncperf demo without extras does not name asyncperf[demo]"; }
step "without extras, the demo runs part 1 and says: ${hint}"
status=0
"$work/bare/bin/asyncperf" demo --serve >"$work/serve.out" 2>&1 || status=$?
[ "$status" -eq 2 ] && grep -q "asyncperf\[demo\]" "$work/serve.out" ||
  { cat "$work/serve.out" >&2; fail "asyncperf demo --serve without extras: exit $status"; }
step "without extras, demo --serve exits 2: $(cat "$work/serve.out")"

step "clean virtualenv, asyncperf[demo]"
"$python" -m venv "$work/demo"
"$work/demo/bin/python" -m pip install --quiet -c "$lock" "asyncperf[demo] @ file://$wheel"
"$work/demo/bin/asyncperf" "${demo_args[@]}" >"$work/demo.out" 2>&1 ||
  { cat "$work/demo.out" >&2; fail "asyncperf demo with asyncperf[demo] failed"; }
for section in "part 2: a Starlette app" "report (" "loads avoided"; do
  grep -qF "$section" "$work/demo.out" || { cat "$work/demo.out" >&2; fail "no '$section'"; }
done
grep -q "FAILED" "$work/demo.out" && { cat "$work/demo.out" >&2; fail "requests failed"; }
step "with asyncperf[demo], the whole tour runs: $(grep "loads avoided" "$work/demo.out" | tail -n 1 | sed "s/^ *//")"
step "ok"
