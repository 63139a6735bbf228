#!/usr/bin/env bash
# Client CPU per request at 10k rps for several --batch-window values, side by side with wrk -t1
# at full speed, against a loopback nginx (core 0); clients on core 1. 2 rounds, interleaved.
#   bash bench/batch_window_cpu.sh            (about 3 minutes)
set -eu
HERE="$(cd "$(dirname "$0")" && pwd)"; cd "$HERE/.."
CL="${CRESTLINE:-.venv/bin/crestline}"; OUT="${OUT:-bench/out/bw}"; mkdir -p "$OUT"
PREFIX="$(mktemp -d)"; mkdir -p "$PREFIX/logs"
taskset -c 0 nginx -c "$HERE/nginx.conf" -p "$PREFIX"; sleep 0.3
trap 'kill "$(cat "$PREFIX/logs/nginx.pid")" 2>/dev/null || true' EXIT
URL=http://127.0.0.1:8099/
cpu() { awk '{print $1+$2}' "$1"; }
idle_cpu=$( /usr/bin/time -f '%U %S' -o "$OUT/idle.time" taskset -c 1 "$CL" run $URL --rate 10 --duration 10s --quiet >/dev/null; cpu "$OUT/idle.time")
echo "idle run (10 rps, 10 s): ${idle_cpu} s CPU"
for round in 1 2; do
  for w in 0 1ms 2ms 5ms; do
    /usr/bin/time -f '%U %S' -o "$OUT/bw_$w.$round.time" timeout 60 taskset -c 1 "$CL" run $URL \
      --rate 10000 --duration 10s --connections 50 --batch-window $w --quiet --out "$OUT/bw_$w.$round.json"
    python3 - "$OUT/bw_$w.$round.json" "$(cpu "$OUT/bw_$w.$round.time")" "$idle_cpu" "$w" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); c, idle = float(sys.argv[2]), float(sys.argv[3])
ok = d["requests"]["ok"]
print(f"crestline --batch-window {sys.argv[4]:>4}: {d['achieved_rps']:.0f} rps, net {(c-idle)/ok*1e6:.1f} us/req "
      f"(whole {c/ok*1e6:.1f}), send lag p50/p99 {d['send_lag_ms']['p50']:.3f}/{d['send_lag_ms']['p99']:.3f} ms, "
      f"latency p99 {d['latency_ms']['p99']:.3f} ms, client_ok {d['client_ok']}")
PY
  done
  /usr/bin/time -f '%U %S' -o "$OUT/wrk.$round.time" timeout 30 taskset -c 1 wrk -t1 -c50 -d10s $URL > "$OUT/wrk.$round.out"
  req=$(awk '/requests in/ {print $1}' "$OUT/wrk.$round.out")
  echo "wrk -t1 -c50 full speed: $(awk '/Requests\/sec/ {print $2}' "$OUT/wrk.$round.out") rps, $(python3 -c "print(f'{$(cpu "$OUT/wrk.$round.time")}/$req*1e6:.1f')") us/req"
done
