#!/usr/bin/env bash
# A libFuzzer campaign over the fuzz targets, one at a time, niced.
#   fuzz/campaign.sh SECONDS [TARGET...]      (default: every target)
#   RUNS=1000000 fuzz/campaign.sh 600 ...     (stop a target at RUNS executions
#                                              or SECONDS, whichever comes first)
# Needs cargo-fuzz; works on stable through RUSTC_BOOTSTRAP=1. Logs go to
# fuzz/logs/<target>.log; each ends with libFuzzer's final stats
# (stat::number_of_executed_units, stat::peak_rss_mb). Crashes are written
# to fuzz/artifacts/<target>/ and stop that target's run.
set -u
cd "$(dirname "$0")"
secs=${1:?usage: campaign.sh SECONDS [TARGET...]}
shift
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=($(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v mofo-fuzz))
fi
ref=../../shared/reference/models
mkdir -p logs
RUSTC_BOOTSTRAP=1 nice -n 10 cargo fuzz build || exit 1
for t in "${targets[@]}"; do
    extra=()
    case $t in
        safetensors_weights|config_json)
            for m in tiny-llama tiny-llama-gqa-tied; do
                [ -d "$ref/$m" ] && extra+=("$ref/$m")
            done ;;
    esac
    mkdir -p "corpus/$t"
    echo "== $t: $secs s" >&2
    RUSTC_BOOTSTRAP=1 nice -n 10 cargo fuzz run "$t" "corpus/$t" "${extra[@]}" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 \
        -max_len=16384 -print_final_stats=1 ${RUNS:+-runs=$RUNS} >"logs/$t.log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "logs/$t.log")
    took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "logs/$t.log")
    echo "$t: exit $rc, executions ${runs:-?} in ${took:-?} s (limit $secs s${RUNS:+ or $RUNS runs})" | tee -a logs/summary.txt
done
