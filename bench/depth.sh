#!/usr/bin/env bash
# Long-context speed: pp and tg at KV depths (default 0, 4096, 16384) for llama.cpp and
# ik_llama.cpp with flash attention on, and kiln, on one GGUF file, one run, same cache
# type. Prints a markdown table of medians with kiln's ratios.
#
#   bench/depth.sh MODEL.gguf
#
# Env: THREADS (2), REPS (3), KILN_REPS (REPS), DEPTHS (0,4096,16384), PP (512), TG (128), CTYPE (f16), WARMUP (1),
#      KILN_FLAGS (--repack), IK_FLAGS (-rtr 1), IK_LLAMA_BENCH (ik's llama-bench; its
#      columns are left out without it or IK_SWEEP_BENCH), IK_SWEEP_FLAGS (-rtr),
#      LLAMA_BENCH (default: bench/compare.sh's build).
# llama.cpp's llama-bench takes -d (depth) directly. ik_llama.cpp's has no depth option:
# its numbers come from its llama-sweep-bench (IK_SWEEP_BENCH, default: beside
# IK_LLAMA_BENCH), which fills the cache PP tokens at a time and at each depth times a
# PP-token batch and TG generated tokens (one repetition); without it, from llama-bench:
# tg at depth d is its "-gp d,TG" test and pp at depth d is time(d + PP) - time(d) of two
# prompt runs, a difference of two multi-minute timings that this VM's drifting speed
# makes unreliable (one such run gave 59.9 t/s where the sweep measured 45.7).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?usage: bench/depth.sh MODEL.gguf}
cache=${KILN_CACHE:-.cache}
threads=${THREADS:-2}
reps=${REPS:-3}
kiln_reps=${KILN_REPS:-$reps}  # kiln's depth fill is ~3x faster: more repetitions fit
depths=${DEPTHS:-0,4096,16384}
pp=${PP:-512}
tg=${TG:-128}
ctype=${CTYPE:-f16}
warm_lcp="" warm_ik=""
[ "${WARMUP:-1}" = 0 ] && warm_lcp="--no-warmup" warm_ik="-w 0"  # their warm-up repeats the depth prefill
kiln_flags=${KILN_FLAGS:---repack}
ik_flags=${IK_FLAGS:--rtr 1}
lcp_bench=${LLAMA_BENCH:-$cache/llama.cpp/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin/llama-bench}
[ -x "$lcp_bench" ] || { echo "depth.sh: build llama.cpp first (bench/compare.sh does)" >&2; exit 1; }
[ -x build/kiln-bench ] || cmake --build build --target kiln-bench >&2

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# shellcheck disable=SC2086
build/kiln-bench -m "$model" -t "$threads" -p "$pp" -n "$tg" -v 0 -d "$depths" -r "$kiln_reps" -ctk "$ctype" -ctv "$ctype" -o json $kiln_flags > "$tmp/kiln.json"
# shellcheck disable=SC2086
"$lcp_bench" -m "$model" -t "$threads" -p "$pp" -n "$tg" -d "$depths" -r "$reps" -fa 1 $warm_lcp -ctk "$ctype" -ctv "$ctype" -o json > "$tmp/lcp.json" 2>/dev/null
ik_sweep=${IK_SWEEP_BENCH:-}
[ -z "$ik_sweep" ] && [ -n "${IK_LLAMA_BENCH:-}" ] && ik_sweep="$(dirname "$IK_LLAMA_BENCH")/llama-sweep-bench"
: > "$tmp/ik_sweep.txt"
if [ -n "$ik_sweep" ] && [ -x "$ik_sweep" ]; then
  max=0 stride=0
  for d in ${depths//,/ }; do
    [ "$d" -gt "$max" ] && max=$d
    [ "$d" -gt 0 ] && { a=$((d / pp)) b=$stride; while [ "$b" -gt 0 ]; do t=$((a % b)); a=$b; b=$t; done; stride=$a; }
  done
  [ "$stride" -lt 1 ] && stride=1  # measure only every stride-th window: the depths asked for
  sweep_bin=$(realpath "$ik_sweep") model_abs=$(realpath "$model")
  # shellcheck disable=SC2086
  (cd "$tmp" && "$sweep_bin" -m "$model_abs" -t "$threads" -c $((max + pp)) -ub "$pp" -b "$pp" -n "$tg" --sweep-stride "$stride" -fa 1 \
    -ctk "$ctype" -ctv "$ctype" ${IK_SWEEP_FLAGS:--rtr} 2>&1) | grep '^|' > "$tmp/ik_sweep.txt" || true  # in $tmp: it writes llama.log to its directory
elif [ -n "${IK_LLAMA_BENCH:-}" ]; then
  gp="" pps=""
  for d in ${depths//,/ }; do
    [ "$d" -gt 0 ] && gp="$gp -gp $d,$tg" && pps="$pps,$d"
    pps="$pps,$((d + pp))"
  done
  # shellcheck disable=SC2086
  "$IK_LLAMA_BENCH" -m "$model" -t "$threads" -p "${pps#,}" -n "$tg" $gp -r "$reps" -fa 1 $warm_ik -ctk "$ctype" -ctv "$ctype" $ik_flags -o json > "$tmp/ik.json" 2>/dev/null || echo "[]" > "$tmp/ik.json"
fi

python3 - "$tmp" "$depths" "$pp" "$tg" "$(basename "$model" .gguf)" "$ctype" <<'EOF'
import json, statistics, sys
tmp, depths, pp, tg, name, ctype = sys.argv[1], [int(d) for d in sys.argv[2].split(",")], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
kiln = json.load(open(f"{tmp}/kiln.json"))
lcp = json.load(open(f"{tmp}/lcp.json"))
ik = json.load(open(f"{tmp}/ik.json")) if __import__("os").path.exists(f"{tmp}/ik.json") else []
sweep = {}  # depth -> (pp t/s, tg t/s), from llama-sweep-bench's "| PP | TG | N_KV | T_PP | S_PP | T_TG | S_TG |" rows
for line in open(f"{tmp}/ik_sweep.txt"):
    c = [x.strip() for x in line.strip().strip("|").split("|")]
    if len(c) >= 7 and c[2].isdigit() and int(c[0]) == pp and int(c[1]) == tg:
        sweep[int(c[2])] = (float(c[4]), float(c[6]))
med = statistics.median
def k(test, d):
    return next((r["tps_median"] for r in kiln["results"] if r["test"] == test and r["depth"] == d), None)
def l(np_, ng, d):
    return next((med(r["samples_ts"]) for r in lcp if r["n_prompt"] == np_ and r["n_gen"] == ng and r.get("n_depth", 0) == d), None)
def ik_tg(d):
    if sweep: return sweep[d][1] if d in sweep else None
    for r in ik:
        if r["n_gen"] == tg and (r["n_prompt"] == d if d else r["n_prompt"] == 0):
            # -gp rows report the tg part's speed at depth; plain tg rows have n_prompt 0
            return med(r["samples_ts"])
    return None
def ik_pp(d):
    if sweep: return sweep[d][0] if d in sweep else None
    t = {r["n_prompt"]: med(r["samples_ns"]) / 1e9 for r in ik if r["n_gen"] == 0}  # seconds per prompt length
    if d == 0: return pp / t[pp] if pp in t else None
    if d in t and d + pp in t and t[d + pp] > t[d]: return pp / (t[d + pp] - t[d])
    return None
fmt = lambda x: "-" if x is None else f"{x:.2f}"
ratio = lambda a, b: "-" if a is None or b is None else f"{a / b:.2f}x"
print(f"| model | cache | test | llama.cpp -fa 1 | ik_llama.cpp -fa 1 | kiln | kiln / llama.cpp | kiln / ik_llama.cpp |")
print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
for d in depths:
    for test, lv, iv in ((f"pp{pp}", l(pp, 0, d), ik_pp(d)), (f"tg{tg}", l(0, tg, d), ik_tg(d))):
        kv = k(test, d)
        print(f"| {name} | {ctype} | {test} @ d{d} | {fmt(lv)} | {fmt(iv)} | {fmt(kv)} | {ratio(kv, lv)} | {ratio(kv, iv)} |")
r = [x for x in kiln["results"] if x["test"] == f"tg{tg}"]
print()
print("kiln decode reads (weights + KV cache per token):", ", ".join(f"d{x['depth']}: {x.get('read_gbps', 0):.1f} GB/s = {100 * x.get('bandwidth_fraction', 0):.0f}% "
      f"of the {x.get('bandwidth_gbps', 0):.1f} GB/s probed around it" for x in r))
EOF
