#!/usr/bin/env bash
# Builds the libFuzzer drivers in Tests/Fuzz (AddressSanitizer + libFuzzer, release) and runs them.
#
#   scripts/fuzz.sh run SECONDS [DRIVER...]     fuzz each driver for SECONDS (make fuzz, make fuzz-long)
#   scripts/fuzz.sh replay SECONDS [DRIVER...]  run the committed corpus and FailCases once (-runs=0),
#                                               then fuzz SECONDS more from them (make fuzz-replay)
#   scripts/fuzz.sh merge [DRIVER...]           add the working corpus's new-coverage inputs to Tests/Fuzz/Corpus
#
# Everything runs at nice 19. New inputs go to a working corpus under Tests/Fuzz/.build/corpus/ (not in git);
# Tests/Fuzz/Corpus/<driver>/ holds the committed seeds. A crash stops that driver, its input is kept in
# Tests/Fuzz/.build/crashes/, and the script exits 1 after the other drivers ran. See Tests/Fuzz/README.md.
set -euo pipefail
cd "$(dirname "$0")/../Tests/Fuzz"

SWIFT=${SWIFT:-swift}
ALL_DRIVERS=(http-request-head http-body http-response-head websocket-frames websocket-messages inflate uwsgi
    backend-message zmtp curve-server curve-keys config http2-server file-bundle
    worker-message worker-reports)

mode=${1:?usage: fuzz.sh run|replay SECONDS [DRIVER...] | merge [DRIVER...]}
shift
seconds=0
if [[ $mode != merge ]]; then
    seconds=${1:?SECONDS}
    shift
fi
drivers=("$@")
[[ ${#drivers[@]} -gt 0 ]] || drivers=("${ALL_DRIVERS[@]}")

echo "== building the fuzz drivers (release, -sanitize=fuzzer,address: one flag, a second -sanitize= would replace the first)"
nice -n 19 "$SWIFT" build -c release -Xswiftc -sanitize=fuzzer,address 2>&1 \
    | grep -v -e 'warning:' -e '^ *[0-9]* |' -e '^ *|' -e '^$' || true
bin=.build/release
[[ -x $bin/${drivers[0]} ]] || { echo "fuzz.sh: build failed" >&2; exit 1; }

# Swift's own crash backtracer and ASan's both want the crash; libFuzzer needs ASan's report.
export SWIFT_BACKTRACE=enable=no
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
common=(-timeout=10 -rss_limit_mb=2048 -max_len=16384 -print_final_stats=1)
mkdir -p .build/logs .build/crashes
failed=()
for driver in "${drivers[@]}"; do
    seeds=Corpus/$driver
    work=.build/corpus/$driver
    cases=FailCases/$driver
    log=.build/logs/$driver.log
    mkdir -p "$seeds" "$work"
    if [[ $mode == merge ]]; then
        nice -n 19 "$bin/$driver" -merge=1 "${common[@]}" "$seeds" "$work" >"$log" 2>&1
        echo "$driver: $(ls "$seeds" | wc -l) seeds"
        continue
    fi
    status=0
    if [[ $mode == replay ]]; then
        inputs=("$seeds")
        [[ -d $cases ]] && inputs+=("$cases")
        nice -n 19 "$bin/$driver" -runs=0 "${common[@]}" "${inputs[@]}" >"$log" 2>&1 || status=$?
        if [[ $status -eq 0 && $seconds -gt 0 ]]; then
            nice -n 19 "$bin/$driver" -max_total_time="$seconds" "${common[@]}" \
                -artifact_prefix=".build/crashes/$driver-" "$work" "${inputs[@]}" >>"$log" 2>&1 || status=$?
        fi
    else
        nice -n 19 "$bin/$driver" -max_total_time="$seconds" "${common[@]}" \
            -artifact_prefix=".build/crashes/$driver-" "$work" "$seeds" >"$log" 2>&1 || status=$?
    fi
    runs=$(awk -F: '/stat::number_of_executed_units/ { n += $NF } END { print n + 0 }' "$log")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
    if [[ $status -eq 0 ]]; then
        printf '%-20s ok     %12s runs  %-10s corpus %5d  (seeds %d)\n' "$driver" "$runs" "$cov" \
            "$(ls "$work" | wc -l)" "$(ls "$seeds" | wc -l)"
    else
        printf '%-20s FAILED (exit %d), see Tests/Fuzz/%s\n' "$driver" "$status" "$log"
        grep -m1 -e 'fuzz invariant' -e 'ERROR: ' -e 'Fatal error' "$log" || true
        grep -e 'Test unit written to' "$log" || true
        failed+=("$driver")
    fi
done
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzz.sh: failed: ${failed[*]}. Keep each crash input in Tests/Fuzz/FailCases/<driver>/ (swift test replays it)." >&2
    exit 1
fi
