#!/usr/bin/env bash
# kiln-bench end to end on SmolLM2 (a few tokens, no timing asserted): the JSON holds one
# row per test with a positive rate, -b adds batched decode rows, --ab read-ahead (decode-tuning) adds its in-process comparison, the
# probe gives decode rows both bandwidth fractions, and bad flags are one-line errors.
#   tests/scripts/bench_check.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
bench=$build/kiln-bench
smol=$(python3 tools/fetch_models.py smollm2)
"$bench" -m "$smol" -p 16 -n 8 -v 4 -r 2 -t 2 --no-probe --repack --ab read-ahead -o json 2>/dev/null |
  python3 -c 'import json, sys
rows = {r["test"]: r for r in json.load(sys.stdin)["results"]}
assert sorted(rows) == ["pp16", "tg8", "tg8 ab:read-ahead", "v4"], sorted(rows)
assert all(r["tps_median"] > 0 and len(r["samples"]) == 2 for r in rows.values()), rows
ab = rows["tg8 ab:read-ahead"]
assert ab["ab_switch"] == "read-ahead" and len(ab["ab_speedup_samples"]) == 2 and ab["ab_speedup"] > 0, ab
assert rows["v4"]["cost_vs_decode_step"] > 0
print("  pp16 %.1f t/s, tg8 %.1f t/s, read-ahead on/off %.3fx, v4 %.2fx a decode step" % (rows["pp16"]["tps_median"], rows["tg8"]["tps_median"], ab["ab_speedup"], rows["v4"]["cost_vs_decode_step"]))'
"$bench" -m "$smol" -p 0 -n 64 -v 0 -r 2 -t 2 --no-probe --repack --ab decode-tuning -o json 2>/dev/null |
  python3 -c 'import json, sys
rows = {r["test"]: r for r in json.load(sys.stdin)["results"]}
assert sorted(rows) == ["tg64", "tg64 ab:decode-tuning"], sorted(rows)
ab = rows["tg64 ab:decode-tuning"]
assert ab["ab_switch"] == "decode-tuning" and len(ab["ab_speedup_samples"]) == 2 and ab["ab_speedup"] > 0, ab
print("  tg64 %.1f t/s, decode tuning on/off %.3fx" % (rows["tg64"]["tps_median"], ab["ab_speedup"]))'
# with the bandwidth probe: decode against the probes around it and interleaved with them
"$bench" -m "$smol" -p 0 -n 16 -v 0 -r 1 -t 2 -o json 2>/dev/null |
  python3 -c 'import json, sys
j = json.load(sys.stdin)
tg = j["results"][0]
assert j["read_bandwidth_gbps"] > 0 and tg["test"] == "tg16", j
assert tg["bandwidth_fraction"] > 0 and tg["bandwidth_fraction_interleaved"] > 0, tg
print("  tg16 reads %.1f GB/s: %.0f%% of the probes around it, %.0f%% interleaved" % (tg["read_gbps"], 100 * tg["bandwidth_fraction"], 100 * tg["bandwidth_fraction_interleaved"]))'
# -b: several sequences decoding at once, each row's aggregate against one sequence's
"$bench" -m "$smol" -p 0 -n 8 -v 0 -b 1,4 -r 2 -t 2 --no-probe -o json 2>/dev/null |
  python3 -c 'import json, sys
rows = {r["test"]: r for r in json.load(sys.stdin)["results"]}
assert sorted(rows) == ["tg8", "tg8 x1", "tg8 x4"], sorted(rows)
assert rows["tg8 x4"]["sequences"] == 4 and rows["tg8 x4"]["speedup_vs_one_sequence"] > 0, rows["tg8 x4"]
assert abs(rows["tg8 x1"]["speedup_vs_one_sequence"] - 1) < 1e-9
print("  tg8 x4: %.1f t/s aggregate, %.2fx one sequence" % (rows["tg8 x4"]["tps_median"], rows["tg8 x4"]["speedup_vs_one_sequence"]))'
expect_error() {  # pattern, flags...
  local pattern=$1
  shift
  if out=$("$bench" "$@" 2>&1 >/dev/null); then echo "expected an error from: kiln-bench $*" >&2; exit 1; fi
  grep -q -- "$pattern" <<<"$out" || { echo "error '$out' does not mention '$pattern'" >&2; exit 1; }
}
expect_error "--ab needs a switch" -m "$smol" --ab prefetch
expect_error "-n needs a list" -m "$smol" -n 8,x
expect_error "unknown flag '--frobnicate'" -m "$smol" --frobnicate
expect_error "no model given" -n 8
expect_error "-b needs a list" -m "$smol" -b 0
echo "  bad flags: clear errors"
