#!/usr/bin/env bash
# One lemo-worker process per GPU of this pod (the multi-node overlay gives each GPU node one pod
# holding all its GPUs, so that NCCL between a job's ranks on one node uses NVLink/P2P, which
# separate pods cannot: docs/deploy.md). Worker i trains on cuda:i, is worker
# "<pod>-gpu<i>", serves /metrics on 9400+i and hosts its c10d store on 29500+i; all share the
# node label, so the coordinator packs a job's ranks onto one node first. If any worker exits,
# the others are stopped and the pod exits with its status, and Kubernetes restarts the pod (the
# coordinator restarts the affected jobs from their checkpoints).
set -uo pipefail
gpus=${LEMO_GPUS_PER_POD:?set LEMO_GPUS_PER_POD to the GPUs this pod requests}
: "${POD_NAME:?}" "${POD_NAMESPACE:?}" "${NODE_NAME:?}"
pids=()
stop() { kill -TERM "${pids[@]}" 2>/dev/null; }
trap stop TERM INT
for ((i = 0; i < gpus; i++)); do
  mkdir -p "/work/gpu$i"
  lemo-worker \
    --coordinator=lemo-coordinator:50051 \
    --device="cuda:$i" \
    --worker-id="$POD_NAME-gpu$i" \
    --node="$NODE_NAME" \
    --rendezvous-host="$POD_NAME.lemo-worker.$POD_NAMESPACE.svc" \
    --rendezvous-port=$((29500 + i)) \
    --metrics-listen="0.0.0.0:$((9400 + i))" \
    --tls-ca=/etc/lemo/tls/ca.crt \
    --token-file=/etc/lemo/token/token \
    --model-root=/models \
    --data-root=/models \
    --work-dir="/work/gpu$i" &
  pids+=("$!")
done
wait -n
status=$?
stop
wait
exit "$status"
