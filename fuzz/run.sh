#!/bin/sh
# Run fuzz targets one after another, one process each (-workers=1 -jobs=1),
# each for $SECONDS_PER_TARGET seconds (default 610), on the stable
# toolchain. Run from fuzz/; logs go to logs/<target>.log, new corpus
# entries to corpus/<target>/ and crashes to artifacts/<target>/.
#
#   ./run.sh                      # every target
#   ./run.sh carbon_line config_js
#
# The binaries are built once up front; set NO_BUILD=1 to run what is
# already built (e.g. while editing the library).
set -u
export RUSTC_BOOTSTRAP=1
secs=${SECONDS_PER_TARGET:-610}
targets=${*:-"statsd_packet statsd_roundtrip dogstatsd_event dogstatsd_check carbon_line mapping_yaml config_toml config_js pickle_frame forward_message"}
target_dir=${CARGO_TARGET_DIR:-target}
if [ -z "${NO_BUILD:-}" ]; then
    cargo fuzz build -a || exit 1
fi
bin_dir=$(cd "$target_dir" && pwd)/x86_64-unknown-linux-gnu/release
mkdir -p logs
for t in $targets; do
    mkdir -p "corpus/$t" "artifacts/$t" "logs/$t"
    echo "$(date -u +%FT%TZ) start $t" >> logs/runs.txt
    # -jobs=1 makes libFuzzer write its output to fuzz-0.log in the cwd.
    (cd "logs/$t" && "$bin_dir/$t" -workers=1 -jobs=1 -max_total_time="$secs" \
        -print_final_stats=1 -artifact_prefix="../../artifacts/$t/" "../../corpus/$t" \
        > ../"$t".runner.log 2>&1)
    echo "$(date -u +%FT%TZ) end $t rc=$?" >> logs/runs.txt
    cp "logs/$t/fuzz-0.log" "logs/$t.log" 2>/dev/null
done
