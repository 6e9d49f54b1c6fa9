#!/usr/bin/env bash
# The block/permit scenario on a kind cluster (hosts with Docker, kind, kubectl, helm, jq and Internet access; CI:
# .github/workflows/kind-e2e.yml). It cannot run on the project's own machines (no node image can be pulled there);
# test/e2e/kube-scenario.test.ts runs the same scenario against a real API server built from source instead.
#
# Create a cluster, build and load the image, install the chart, deploy Obot-labelled pods with the three translator
# shapes of FirewallPolicy, then assert: permit/deny from inside the pods and the matching events; deleting a policy
# falls back to the default action; a DaemonSet restart lets no rogue connection through; uninstall leaves the nodes
# clean. Exits non-zero at the first failed assertion; KEEP_CLUSTER=1 leaves the cluster for inspection.
set -euo pipefail
cd "$(dirname "$0")/../../.."

CLUSTER="${KIND_CLUSTER:-egressguard-e2e}"
NODE_IMAGE="${KIND_NODE_IMAGE:-kindest/node:v1.35.0}"
IMAGE="${EGRESSGUARD_IMAGE:-egressguard:e2e}"
NAMESPACE=egressguard-system
HERE=test/e2e/kind
ALLOWED=https://api.openai.com/
OTHER=https://example.com/

fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }
for tool in docker kind kubectl helm jq; do command -v "$tool" >/dev/null || fail "$tool is required"; done

cleanup() { [ "${KEEP_CLUSTER:-0}" = 1 ] || kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true; }
trap cleanup EXIT

step "cluster $CLUSTER ($NODE_IMAGE)"
kind create cluster --name "$CLUSTER" --config "$HERE/cluster.yaml" --image "$NODE_IMAGE" --wait 120s

step "image $IMAGE"
docker build -t "$IMAGE" .
kind load docker-image "$IMAGE" --name "$CLUSTER"

step "chart"
helm install egressguard charts/egressguard -n "$NAMESPACE" --create-namespace --wait --timeout 5m \
  --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" --set image.pullPolicy=Never
kubectl apply -f "$HERE/manifests/workloads.yaml"
kubectl -n obot-mcp wait --for=condition=Ready pod --all --timeout=180s
kubectl apply -f "$HERE/manifests/policies.yaml"
# The seed lab's wait loop, unchanged: status.ruleset is set once every node running a selected pod enforces it.
for policy in obot-ms1benign-fw obot-ms1rogue-fw obot-ms1open-fw; do
  for _ in $(seq 1 60); do
    kubectl get firewallpolicy "$policy" -n obot-mcp -o jsonpath='{.status.ruleset}' | grep -q . && break
    sleep 2
  done
  kubectl get firewallpolicy "$policy" -n obot-mcp -o jsonpath='{.status.ruleset}' | grep -q . || fail "$policy never got status.ruleset"
done
kubectl get firewallpolicy -n obot-mcp

# reach POD URL: prints the HTTP status curl got, 000 when the connection failed.
reach() { kubectl exec -n obot-mcp "$1" -- curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$2" || true; }
reaches() { [ "$(reach "$1" "$2")" != 000 ]; }

step "permit and deny"
reaches ms1benign "$ALLOWED" || fail "benign pod cannot reach its allowed name"
reaches ms1benign "$OTHER" && fail "benign pod reached a name outside its allowlist"
reaches ms1rogue "$ALLOWED" && fail "rogue pod reached $ALLOWED"
reaches ms1rogue "$OTHER" && fail "rogue pod reached $OTHER"
reaches ms1open "$OTHER" || fail "allow-all pod cannot reach $OTHER"

step "events"
sleep 3 # the event pipeline aggregates for a second before it writes
events=$(kubectl logs -n "$NAMESPACE" -l app.kubernetes.io/name=egressguard --tail=-1 --prefix=false | grep '^{' || true)
has_event() { # namespace pod verdict fqdn rule
  jq -e --arg ns "$1" --arg pod "$2" --arg verdict "$3" --arg fqdn "$4" --arg rule "$5" -s '
    any(.[]; .workload.namespace == $ns and .workload.name == $pod and .workload.labels.app == $pod
      and (.workload.podIps | length > 0) and .verdict == $verdict and .fqdn == $fqdn and .rule == $rule)' >/dev/null <<<"$events"
}
has_event obot-mcp ms1benign permit api.openai.com allow-approved-egress || fail "no permit event for the benign pod"
has_event obot-mcp ms1rogue deny example.com deny-all-external || fail "no deny event for the rogue pod"

step "deleting a policy falls back to the default action"
kubectl delete firewallpolicy obot-ms1benign-fw -n obot-mcp
sleep 2
reaches ms1benign "$ALLOWED" && fail "benign pod still reaches $ALLOWED without its policy"

step "DaemonSet restart while the rogue pod loops"
kubectl exec -n obot-mcp ms1rogue -- sh -c \
  'for i in $(seq 1 300); do curl -s -o /dev/null --max-time 1 https://example.com/ && echo LEAK; sleep 0.1; done' >/tmp/egressguard-kind-loop.log &
loop=$!
kubectl rollout restart daemonset -n "$NAMESPACE" -l app.kubernetes.io/name=egressguard
kubectl rollout status daemonset -n "$NAMESPACE" -l app.kubernetes.io/name=egressguard --timeout=180s
wait "$loop"
grep -q LEAK /tmp/egressguard-kind-loop.log && fail "the rogue pod connected during the rollout"

step "uninstall leaves the nodes clean"
helm uninstall egressguard -n "$NAMESPACE" --wait
for node in $(kind get nodes --name "$CLUSTER"); do
  docker exec "$node" sh -c '! ls -d /sys/fs/bpf/egressguard* 2>/dev/null' || fail "$node keeps pinned egressguard state"
  docker exec "$node" sh -c 'for dev in $(ls /sys/class/net); do tc filter show dev "$dev" ingress; tc filter show dev "$dev" egress; done 2>/dev/null' |
    grep -qi egressguard && fail "$node keeps egressguard tc filters"
done
echo "kind scenario passed"
