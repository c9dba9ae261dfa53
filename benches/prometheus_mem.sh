#!/bin/bash
# Memory and flush cost of the Prometheus exporter at many counter series.
#
# usage: benches/prometheus_mem.sh <mode> [keys]
#   mode: off      [http] enabled = false
#         idle     HTTP on, /metrics never requested (the exporter stays idle)
#         scraped  HTTP on, /metrics requested every 5 s from before the load
#   keys: distinct counter series (default 1000000)
# Needs `cargo build --release --bins` first (BIN overrides target/release)
# and curl. Prints RSS per series, the last flushes (with the exporter's
# observe and render times) and, when scraped, scrape times and sizes.
set -u
MODE=${1:?mode: off, idle or scraped}
KEYS=${2:-1000000}
BIN=${BIN:-target/release}
TMP=$(mktemp -d)
HTTP=true
[ "$MODE" = off ] && HTTP=false
cat > "$TMP/s.toml" <<T
[statsd]
udp = ["127.0.0.1:18125"]
tcp = []
[flush]
interval = "2s"
[http]
enabled = $HTTP
address = "127.0.0.1:19102"
[admin]
enabled = false
[log]
level = "statsyard=debug"
[[sink]]
type = "graphite"
address = "127.0.0.1:12003"
T
"$BIN/statsyard" --config "$TMP/s.toml" 2>"$TMP/server.log" &
PID=$!
sleep 1
BASE=$(awk '/VmRSS/{print $2}' /proc/$PID/status)
SCRAPER=
if [ "$MODE" = scraped ]; then
    (while :; do
        curl -s -o /dev/null -w '%{time_total} %{size_download}\n' \
            http://127.0.0.1:19102/metrics >>"$TMP/scrapes"
        sleep 5
    done) &
    SCRAPER=$!
fi
"$BIN/statsyard-loadgen" --target 127.0.0.1:18125 --graphite-listen 127.0.0.1:12003 \
    --flush-ms 2000 --wait-flush --settle 10 --mix c=1 --keys "$KEYS" \
    --lines $((KEYS * 2)) --rate 1000000 --server-pid $PID 2>&1 >/dev/null | tail -4
# QUIET: seconds to wait after the load, so that the last flushes are quiet ones.
sleep "${QUIET:-3}"
RSS=$(awk '/VmRSS/{print $2}' /proc/$PID/status)
HWM=$(awk '/VmHWM/{print $2}' /proc/$PID/status)
echo "mode=$MODE keys=$KEYS base_rss_kib=$BASE rss_kib=$RSS peak_rss_kib=$HWM" \
    "bytes_per_series=$(((RSS - BASE) * 1024 / KEYS))"
grep "flushed" "$TMP/server.log" | tail -6 | sed 's/.*flushed/flushed/'
if [ -n "$SCRAPER" ]; then
    kill "$SCRAPER"
    wait "$SCRAPER" 2>/dev/null
    echo "scrapes (seconds bytes), last 4:"
    tail -4 "$TMP/scrapes"
fi
kill $PID
wait $PID 2>/dev/null
rm -rf "$TMP"
