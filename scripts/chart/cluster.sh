# shellcheck shell=bash
# Stage 6 of scripts/check-chart (sourced from it; uses its pass/fail/info/die,
# HELM, KUBECTL, PY, CACHE, WORK, CHART, RELEASE and PIDS).
#
# Starts a throwaway control plane on loopback: etcd, kube-apiserver and
# kube-controller-manager (Kubernetes 1.20, so the chart's fallbacks to
# autoscaling/v2beta2 and policy/v1beta1 are exercised), on free ports, with
# certificates and a token made here. Installs, upgrades and uninstalls the
# chart and checks what the cluster accepted and created. There is no kubelet
# or scheduler: pods are created by the controllers but never run.

NS=alerts
FULL=$RELEASE # the release name contains the chart name

free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_until SECONDS CMD...: retry CMD every second until it succeeds.
wait_until() {
  local deadline=$(($(date +%s) + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    (($(date +%s) < deadline)) || return 1
    sleep 1
  done
}

k() { "$KUBECTL" --request-timeout=20s "$@"; }
kn() { k -n "$NS" "$@"; }

# expect DESC WANT SECONDS CMD...: PASS when CMD prints WANT within SECONDS.
expect() {
  local desc=$1 want=$2 secs=$3 got=""
  shift 3
  local deadline=$(($(date +%s) + secs))
  while :; do
    got=$("$@" 2>&1) || true
    [[ $got == "$want" ]] && { pass "$desc"; return 0; }
    (($(date +%s) < deadline)) || break
    sleep 1
  done
  fail "$desc: want '$want', got '$got'"
  return 0
}

ensure_etcd() {
  command -v etcd >/dev/null && return 0
  info "installing Debian's etcd-server"
  # Keep the package's service from starting: only this script runs etcd.
  local guard=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    guard=1
  fi
  if ! apt-cache policy etcd-server 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    timeout 10m apt-get update -qq
  fi
  DEBIAN_FRONTEND=noninteractive timeout 10m apt-get install -y -qq --no-install-recommends etcd-server >"$WORK/apt-etcd.log" 2>&1 ||
    { cat "$WORK/apt-etcd.log" >&2; [[ -z $guard ]] || rm -f /usr/sbin/policy-rc.d; die "apt-get install etcd-server"; }
  [[ -z $guard ]] || rm -f /usr/sbin/policy-rc.d
}

start_control_plane() {
  local d="$WORK/cluster" kbin="$CACHE/bin"
  mkdir -p "$d/etcd"
  local etcd_port peer_port api_port
  etcd_port=$(free_port)
  peer_port=$(free_port)
  api_port=$(free_port)

  # Certificates: a CA, the API server's serving certificate for 127.0.0.1,
  # and the service-account signing key. The admin authenticates with a token.
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=check-chart-ca \
    -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver \
    -keyout "$d/apiserver.key" -out "$d/apiserver.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n' >"$d/san.ext"
  openssl x509 -req -in "$d/apiserver.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
    -days 1 -extfile "$d/san.ext" -out "$d/apiserver.crt" 2>/dev/null
  openssl genrsa -out "$d/sa.key" 2048 2>/dev/null
  openssl rsa -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null
  local token
  token=$(openssl rand -hex 24)
  printf '%s,admin,admin,system:masters\n' "$token" >"$d/tokens.csv"

  etcd --name check-chart --data-dir "$d/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "check-chart=http://127.0.0.1:$peer_port" >"$d/etcd.log" 2>&1 &
  PIDS+=($!)
  wait_until 30 curl -fsS "http://127.0.0.1:$etcd_port/health" ||
    { tail -n 30 "$d/etcd.log"; die "etcd did not become healthy"; }

  "$kbin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" --insecure-port 0 \
    --tls-cert-file "$d/apiserver.crt" --tls-private-key-file "$d/apiserver.key" \
    --client-ca-file "$d/ca.crt" --token-auth-file "$d/tokens.csv" \
    --authorization-mode RBAC \
    --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file "$d/sa.pub" --service-account-signing-key-file "$d/sa.key" \
    --service-cluster-ip-range 10.96.0.0/16 \
    --endpoint-reconciler-type none \
    --enable-priority-and-fairness=false \
    --logtostderr >"$d/apiserver.log" 2>&1 &
  PIDS+=($!)

  export KUBECONFIG="$d/kubeconfig"
  k config set-cluster check-chart --server "https://127.0.0.1:$api_port" \
    --certificate-authority "$d/ca.crt" --embed-certs >/dev/null
  k config set-credentials admin --token "$token" >/dev/null
  k config set-context check-chart --cluster check-chart --user admin >/dev/null
  k config use-context check-chart >/dev/null
  wait_until 90 k get --raw /readyz ||
    { tail -n 40 "$d/apiserver.log"; die "kube-apiserver did not become ready"; }

  "$kbin/kube-controller-manager" \
    --kubeconfig "$KUBECONFIG" \
    --port 0 --secure-port 0 --leader-elect=false \
    --service-account-private-key-file "$d/sa.key" --root-ca-file "$d/ca.crt" \
    --controllers '*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-route,-service,-attachdetach,-persistentvolume-binder,-persistentvolume-expander,-ttl,-bootstrapsigner,-tokencleaner,-csrsigning,-csrapproving,-csrcleaner,-root-ca-cert-publisher' \
    --horizontal-pod-autoscaler-sync-period 2s \
    --logtostderr >"$d/controller-manager.log" 2>&1 &
  PIDS+=($!)
  wait_until 60 k -n default get serviceaccount default ||
    { tail -n 40 "$d/controller-manager.log"; die "kube-controller-manager did not start its controllers"; }
  pass "control plane up: etcd $(etcd --version | sed -n 's/^etcd Version: //p'), $("$kbin/kube-apiserver" --version) on 127.0.0.1:$api_port"
}

# json OBJECT PYTHON-EXPR: evaluate EXPR on `kubectl get -o json` as `o`.
json() {
  local obj=$1 expr=$2
  kn get "$obj" -o json | "$PY" -c "import json,sys; o=json.load(sys.stdin); print($expr)"
}

# raw PATH PYTHON-EXPR: the same for an exact API path (pins the API version).
raw() {
  k get --raw "$1" | "$PY" -c "import json,sys; o=json.load(sys.stdin); print($2)"
}

# The ReplicaSets of a Deployment, "replicas:checksum" sorted by revision.
replicasets() {
  kn get rs -l "app.kubernetes.io/component=$1" -o json | "$PY" -c '
import json, sys
items = json.load(sys.stdin)["items"]
items.sort(key=lambda r: int(r["metadata"]["annotations"]["deployment.kubernetes.io/revision"]))
print(" ".join(str(r["spec"]["replicas"]) for r in items))'
}

pods_of() {
  kn get pods -l "app.kubernetes.io/instance=$RELEASE,app.kubernetes.io/component=$1" -o name | wc -l
}

check_install() {
  local c
  for c in listener processor notify; do
    expect "Deployment $FULL-$c exists and its HPA set it to the minimum, 2" "2" 60 \
      json "deploy/$FULL-$c" 'o["spec"]["replicas"]'
    expect "HPA $c (autoscaling/v2beta2 fallback) targets Deployment $FULL-$c, 2-10 pods at 70% CPU" \
      "Deployment/$FULL-$c 2 10 70" 30 \
      raw "/apis/autoscaling/v2beta2/namespaces/$NS/horizontalpodautoscalers/$FULL-$c" \
      '"%s/%s %s %s %s" % (o["spec"]["scaleTargetRef"]["kind"], o["spec"]["scaleTargetRef"]["name"], o["spec"]["minReplicas"], o["spec"]["maxReplicas"], o["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"])'
    expect "HPA raised $c to its minimum: one ReplicaSet with 2 replicas" "2" 60 replicasets "$c"
    expect "ReplicaSet of $c created its 2 pods (accepted by admission: non-root, read-only root fs)" "2" 60 pods_of "$c"
    expect "PDB $c (policy/v1beta1 fallback) maxUnavailable 1 selects $c" "1 $c" 30 \
      raw "/apis/policy/v1beta1/namespaces/$NS/poddisruptionbudgets/$FULL-$c" \
      '"%s %s" % (o["spec"]["maxUnavailable"], o["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"])'
    expect "Service $c port" "$(case $c in listener) echo 4000 ;; processor) echo 4001 ;; notify) echo 4002 ;; esac)" 10 \
      json "svc/$FULL-$c" 'o["spec"]["ports"][0]["port"]'
    expect "pod template of $c: probes, grace, preStop, security" \
      "/livez /readyz 30 True True 10001" 10 \
      json "deploy/$FULL-$c" '(lambda p, c: "%s %s %s %s %s %s" % (c["livenessProbe"]["httpGet"]["path"], c["readinessProbe"]["httpGet"]["path"], p["terminationGracePeriodSeconds"], c["securityContext"]["readOnlyRootFilesystem"], "preStop" in c["lifecycle"], p["securityContext"]["runAsUser"]))(o["spec"]["template"]["spec"], o["spec"]["template"]["spec"]["containers"][0])'
  done
  expect "notify Service keeps clients on one pod (ClientIP affinity)" "ClientIP" 10 \
    json "svc/$FULL-notify" 'o["spec"]["sessionAffinity"]'
  expect "RabbitMQ StatefulSet: 3 nodes, Parallel, volume claims" "3 Parallel data" 10 \
    json "sts/$FULL-rabbitmq" '"%s %s %s" % (o["spec"]["replicas"], o["spec"]["podManagementPolicy"], o["spec"]["volumeClaimTemplates"][0]["metadata"]["name"])'
  expect "RabbitMQ pods and persistent volume claims created" "3 3" 60 \
    sh -c "echo \$(\"$KUBECTL\" -n $NS get pods -l app.kubernetes.io/component=rabbitmq -o name | wc -l) \$(\"$KUBECTL\" -n $NS get pvc -l app.kubernetes.io/component=rabbitmq -o name | wc -l)"
  expect "Redis StatefulSet with AOF config and a volume claim" "1 appendonly yes" 60 \
    sh -c "echo \$(\"$KUBECTL\" -n $NS get pvc -l app.kubernetes.io/component=redis -o name | wc -l) \$(\"$KUBECTL\" -n $NS get cm $FULL-redis -o jsonpath='{.data.redis\.conf}' | grep -x 'appendonly yes')"
  expect "RabbitMQ PDB" "1" 10 raw "/apis/policy/v1beta1/namespaces/$NS/poddisruptionbudgets/$FULL-rabbitmq" 'o["spec"]["maxUnavailable"]'
  expect "Secret holds AMQP_URL and REDIS_URL for the in-chart brokers" \
    "amqp://alerts:change-me-rabbitmq@$FULL-rabbitmq:5672/%2f redis://:change-me-redis@$FULL-redis:6379" 10 \
    json "secret/$FULL" '" ".join(__import__("base64").b64decode(o["data"][k]).decode() for k in ("AMQP_URL", "REDIS_URL"))'
}

# helm upgrade number N of the release with extra helm arguments; helm's output is shown
# only on failure. Uses cluster_stage's hargs.
upgrade() {
  local n=$1 what=$2 short=$3
  shift 3
  if "$HELM" upgrade "$RELEASE" "$CHART" "${hargs[@]}" "$@" >"$WORK/up$n.out" 2>&1; then
    pass "helm upgrade: $what"
  else
    cat "$WORK/up$n.out"
    fail "helm upgrade ($short)"
  fi
}

cluster_stage() {
  ensure_etcd
  local t0=$SECONDS
  timeout "$BUILD_TIMEOUT" "$HELPERS/build-kube.sh" "$CACHE" >"$WORK/build-kube.log" 2>&1 ||
    { tail -n 40 "$WORK/build-kube.log"; die "building Kubernetes (log above)"; }
  if grep -q '^\[build-kube\] built' "$WORK/build-kube.log"; then
    pass "built kube-apiserver and kube-controller-manager from Debian's kubernetes source in $((SECONDS - t0))s (cached in $CACHE/bin)"
  else
    pass "kube-apiserver and kube-controller-manager from the cache ($CACHE/bin)"
  fi
  flock -u 9 # the cache is complete; concurrent runs may proceed
  start_control_plane

  # --- install (default values: in-chart brokers, HPAs) ---
  local hargs=(--namespace "$NS" --timeout 2m)
  if "$HELM" install "$RELEASE" "$CHART" "${hargs[@]}" --create-namespace >"$WORK/install.out" 2>&1; then
    pass "helm install (default values) on Kubernetes 1.20"
  else
    cat "$WORK/install.out"
    die "helm install"
  fi
  if grep -q 'Live page' "$WORK/install.out" && grep -q 'kubectl -n alerts get hpa' "$WORK/install.out"; then
    pass "NOTES.txt tells how to reach the API and the page, and how to scale"
  else
    cat "$WORK/install.out"
    fail "NOTES.txt content"
  fi
  "$HELM" get manifest "$RELEASE" -n "$NS" >"$WORK/manifest-install.yaml"
  expect "helm chose autoscaling/v2beta2 and policy/v1beta1 (1.20 serves neither autoscaling/v2 nor policy/v1)" \
    "HorizontalPodAutoscaler=autoscaling/v2beta2 PodDisruptionBudget=policy/v1beta1" 5 \
    "$PY" -c 'import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
print(" ".join(sorted({"%s=%s" % (d["kind"], d["apiVersion"]) for d in docs if d["kind"] in ("HorizontalPodAutoscaler", "PodDisruptionBudget")})))' \
    "$WORK/manifest-install.yaml"
  check_install

  # --- upgrade 1: listener HPA off with 3 fixed replicas, notify minimum 3 ---
  upgrade 1 "listener HPA off with 3 replicas, notify HPA minimum 3" "scaling" \
    --set listener.autoscaling.enabled=false,listener.replicaCount=3,notify.autoscaling.minReplicas=3
  expect "listener HPA removed" "" 30 sh -c "\"$KUBECTL\" -n $NS get hpa -o name | grep -- '-listener\$' || true"
  expect "listener Deployment has replicas: 3" "3" 30 json "deploy/$FULL-listener" 'o["spec"]["replicas"]'
  expect "listener scaled in place: same ReplicaSet, now 3 replicas" "3" 60 replicasets listener
  expect "notify HPA minimum 3 raised its ReplicaSet to 3" "3" 60 replicasets notify
  expect "processor untouched: 2 replicas under its HPA" "2" 30 replicasets processor

  # --- upgrade 2: config change rolls the pods; listener back under an HPA ---
  upgrade 2 "RUST_LOG=debug, listener HPA on again" "config" --set config.rustLog=debug
  expect "ConfigMap carries RUST_LOG=debug" "debug" 10 json "cm/$FULL-processor" 'o["data"]["RUST_LOG"]'
  expect "listener HPA back" "$FULL-listener" 30 raw "/apis/autoscaling/v2beta2/namespaces/$NS/horizontalpodautoscalers/$FULL-listener" 'o["metadata"]["name"]'
  # maxUnavailable 0: the old ReplicaSet keeps its 2 pods while the new pods
  # (which never get ready here) are surged in: a rollout never drops capacity.
  expect "config change started a rollout of processor that keeps the old pods (old 2, new 1)" "2 1" 60 replicasets processor

  # --- upgrade 3: KEDA instead of the processor HPA ---
  "$PY" "$HELPERS/chartcheck.py" keda-crds >"$WORK/keda-crds.yaml"
  if k apply -f "$WORK/keda-crds.yaml" >/dev/null &&
    wait_until 30 k wait --for condition=established --timeout 5s crd/scaledobjects.keda.sh crd/triggerauthentications.keda.sh; then
    pass "KEDA CRDs (from scripts/chart/keda-v2.schema.json) established"
  else
    fail "KEDA CRDs"
  fi
  upgrade 3 "processor.keda.enabled" "KEDA" -f "$CHART/ci/keda-values.yaml"
  expect "processor HPA removed (KEDA owns scaling)" "" 30 sh -c "\"$KUBECTL\" -n $NS get hpa -o name | grep -- '-processor\$' || true"
  expect "ScaledObject targets the processor Deployment on queue alerts.raw" \
    "$FULL-processor rabbitmq alerts.raw QueueLength $FULL-processor" 30 \
    json "scaledobject/$FULL-processor" '"%s %s %s %s %s" % (o["spec"]["scaleTargetRef"]["name"], o["spec"]["triggers"][0]["type"], o["spec"]["triggers"][0]["metadata"]["queueName"], o["spec"]["triggers"][0]["metadata"]["mode"], o["spec"]["triggers"][0]["authenticationRef"]["name"])'
  "$HELM" get manifest "$RELEASE" -n "$NS" >"$WORK/keda-manifest.yaml"
  kn get scaledobjects,triggerauthentications -o json >"$WORK/keda-live.json"
  if out=$("$PY" "$HELPERS/chartcheck.py" same-specs "$WORK/keda-manifest.yaml" "$WORK/keda-live.json" 2>&1); then
    pass "API server kept every field of the KEDA objects: $out"
  else
    printf '%s\n' "$out"
    fail "KEDA objects changed by the API server (pruned fields?)"
  fi

  # --- upgrade 4: external brokers and an Ingress ---
  upgrade 4 "external brokers, Ingress" "external brokers" -f "$CHART/ci/external-brokers-values.yaml"
  expect "in-chart RabbitMQ and Redis removed" "" 30 sh -c "\"$KUBECTL\" -n $NS get sts -o name"
  expect "Secret points at the external brokers" \
    "amqp://alerts:s3cret@rabbitmq.messaging.svc:5672/%2f" 10 \
    json "secret/$FULL" '__import__("base64").b64decode(o["data"]["AMQP_URL"]).decode()'
  expect "Ingresses: API paths to the listener, the rest to notify" \
    "$FULL-listener:/api/alerts,/api/openapi.json $FULL-notify:/" 10 \
    sh -c "\"$KUBECTL\" -n $NS get ingress -o json | \"$PY\" -c 'import json,sys; print(\" \".join(\"%s:%s\" % (i[\"spec\"][\"rules\"][0][\"http\"][\"paths\"][0][\"backend\"][\"service\"][\"name\"], \",\".join(p[\"path\"] for p in i[\"spec\"][\"rules\"][0][\"http\"][\"paths\"])) for i in json.load(sys.stdin)[\"items\"]))'"

  # --- uninstall ---
  if "$HELM" uninstall "$RELEASE" --namespace "$NS" --timeout 1m >"$WORK/uninstall.out" 2>&1; then
    pass "helm uninstall"
  else
    cat "$WORK/uninstall.out"
    fail "helm uninstall"
  fi
  expect "nothing of the release is left (pods and ReplicaSets collected)" "" 60 \
    sh -c "\"$KUBECTL\" -n $NS get deploy,rs,pods,sts,svc,cm,secret,hpa,pdb,ingress,scaledobjects,triggerauthentications -l app.kubernetes.io/instance=$RELEASE -o name"
}
