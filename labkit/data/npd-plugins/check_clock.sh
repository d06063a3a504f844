#!/bin/sh
# node-problem-detector custom plugin: is this node's clock within MAX seconds of NTP time?
# Usage: check_clock.sh NODE_ROOT MAX_SECONDS. Reads what `chronyc tracking` says (on the lab's simulated nodes,
# NODE_ROOT/run/chrony/tracking; on a real node, run `chronyc tracking` instead of cat).
# Plugin protocol: exit 0 = OK, 1 = problem (NonOK), 2 = unknown; stdout becomes the condition's message.
tracking="$1/run/chrony/tracking"
max="$2"
if [ ! -r "$tracking" ]; then
  echo "no chrony tracking data"
  exit 2
fi
offset=$(awk '/^System time/ {print $4}' "$tracking")
if awk -v o="$offset" -v m="$max" 'BEGIN { exit !(o > m) }'; then
  echo "clock is ${offset}s off NTP time (more than ${max}s)"
  exit 1
fi
echo "clock is ${offset}s off NTP time"
exit 0
