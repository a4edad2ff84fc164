//! End to end against a real cluster (kind, k3d, a cloud cluster, or a bare kube-apiserver
//! with etcd and kube-controller-manager: nothing here needs a kubelet). Every test is
//! `#[ignore]`d, so without a cluster the runner reports them as ignored, never as passed:
//!
//!   KUBECONFIG=~/.kube/config cargo test --test e2e_cluster -- --ignored
//!
//! Asked for with `--ignored` but without KUBECONFIG, each fails saying so. The tests run
//! one at a time (they count the API server's status writes). Each works in its own
//! throw-away namespace (deleted at the end; no finalizers, so that never hangs), runs
//! `corsgate controller` and `corsgate proxy` on this machine on loopback ports, and
//! stops every process it started by its PID. The CRD is applied (server-side) and left
//! installed. docs/controller.md says what each test proves.

mod basics;
mod chart;
#[path = "../support/crd_cases.rs"]
mod crd_cases;
mod ha;
mod kube;
mod load;

/// CEL on the API server, the examples served and Programmed, conflicts, Services, Shadow.
#[test]
#[ignore = "needs a cluster: KUBECONFIG=~/.kube/config cargo test --test e2e_cluster -- --ignored"]
fn controller_and_proxy_against_a_cluster() {
    basics::controller_and_proxy();
}

/// The webhook's denial and warning, exactly as kubectl prints them.
#[test]
#[ignore = "needs a cluster: KUBECONFIG=~/.kube/config cargo test --test e2e_cluster -- --ignored"]
fn webhook_denies_invalid_policies_for_kubectl() {
    basics::webhook_denies_for_kubectl();
}

/// The chart, rendered by the Helm SDK, accepted by the API server (server-side dry run) for
/// the default and the namespace-scoped values.
#[test]
#[ignore = "needs a cluster: KUBECONFIG=~/.kube/config cargo test --test e2e_cluster -- --ignored"]
fn chart_renders_to_objects_the_api_server_accepts() {
    chart::dry_run();
}

/// The controller with a ServiceAccount token bound to exactly the chart's RBAC.
#[test]
#[ignore = "needs a cluster: KUBECONFIG=~/.kube/config cargo test --test e2e_cluster -- --ignored"]
fn controller_does_everything_with_the_charts_rbac_only() {
    chart::least_privilege();
}

/// Two replicas; the leader killed (SIGKILL), then the next stopped (SIGTERM).
#[test]
#[ignore = "needs a cluster: KUBECONFIG=~/.kube/config cargo test --test e2e_cluster -- --ignored"]
fn a_replica_takes_over_when_the_leader_stops() {
    ha::failover();
}

/// 200 policies and 3 proxies: status writes while proxies join, leave and idle; then the
/// time from `kubectl apply` to every proxy serving an edit.
#[test]
#[ignore = "needs a cluster: KUBECONFIG=~/.kube/config cargo test --test e2e_cluster -- --ignored"]
fn status_writes_and_propagation_at_200_policies() {
    load::writes_and_propagation();
}
