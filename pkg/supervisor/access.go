package supervisor

import (
	"context"
	"fmt"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1apply "k8s.io/client-go/applyconfigurations/core/v1"
	rbacv1apply "k8s.io/client-go/applyconfigurations/rbac/v1"
	"k8s.io/client-go/kubernetes"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	bootstraputil "k8s.io/cluster-bootstrap/token/util"

	"github.com/skiff-dev/skiff/pkg/pki"
)

// The groups a bootstrap token puts its holder in, beyond
// system:bootstrappers: what it may join.
const (
	AgentsGroup  = "system:bootstrappers:skiff:agents"
	ServersGroup = "system:bootstrappers:skiff:servers"
)

// JoinClusterRole may use the join API; it is bound to both groups.
const JoinClusterRole = "skiff:join"

// FlannelClusterRole is the pod network's: what flannel's own deployments
// grant it (every Node read, its own Node's annotations written through
// the status subresource), and what the network policy controller reads
// (Pods, Namespaces and NetworkPolicies), as k3s's one controller identity
// serves both.
const FlannelClusterRole = "skiff:flannel"

const fieldManager = "skiff"

// EnsureJoinAccess lets holders of join tokens use the join API (RBAC on
// its non-resource URLs) and stores the server's two tokens as bootstrap
// token Secrets without expiry, which the apiserver's bootstrap token
// authenticator checks: the server token may join servers and agents, the
// agent token agents.
func EnsureJoinAccess(ctx context.Context, client kubernetes.Interface, server, agent Token) error {
	rbac := client.RbacV1()
	role := rbacv1apply.ClusterRole(JoinClusterRole).
		WithLabels(map[string]string{"skiff.dev/managed": "true"}).
		WithRules(rbacv1apply.PolicyRule().WithNonResourceURLs(PathPrefix+"*").WithVerbs("get", "post"))
	if _, err := rbac.ClusterRoles().Apply(ctx, role, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
		return fmt.Errorf("granting the join API: %w", err)
	}
	binding := rbacv1apply.ClusterRoleBinding(JoinClusterRole).
		WithLabels(map[string]string{"skiff.dev/managed": "true"}).
		WithRoleRef(rbacv1apply.RoleRef().WithAPIGroup(rbacv1.GroupName).WithKind("ClusterRole").WithName(JoinClusterRole)).
		WithSubjects(
			rbacv1apply.Subject().WithAPIGroup(rbacv1.GroupName).WithKind(rbacv1.GroupKind).WithName(AgentsGroup),
			rbacv1apply.Subject().WithAPIGroup(rbacv1.GroupName).WithKind(rbacv1.GroupKind).WithName(ServersGroup),
		)
	if _, err := rbac.ClusterRoleBindings().Apply(ctx, binding, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
		return fmt.Errorf("granting the join API: %w", err)
	}
	flannel := rbacv1apply.ClusterRole(FlannelClusterRole).
		WithLabels(map[string]string{"skiff.dev/managed": "true"}).
		WithRules(
			rbacv1apply.PolicyRule().WithAPIGroups("").WithResources("nodes").WithVerbs("get", "list", "watch"),
			rbacv1apply.PolicyRule().WithAPIGroups("").WithResources("nodes/status").WithVerbs("patch"),
			rbacv1apply.PolicyRule().WithAPIGroups("").WithResources("pods", "namespaces").WithVerbs("list", "watch"),
			rbacv1apply.PolicyRule().WithAPIGroups("networking.k8s.io").WithResources("networkpolicies").WithVerbs("list", "watch"),
		)
	if _, err := rbac.ClusterRoles().Apply(ctx, flannel, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
		return fmt.Errorf("granting the pod network: %w", err)
	}
	flannelBinding := rbacv1apply.ClusterRoleBinding(FlannelClusterRole).
		WithLabels(map[string]string{"skiff.dev/managed": "true"}).
		WithRoleRef(rbacv1apply.RoleRef().WithAPIGroup(rbacv1.GroupName).WithKind("ClusterRole").WithName(FlannelClusterRole)).
		WithSubjects(rbacv1apply.Subject().WithAPIGroup(rbacv1.GroupName).WithKind(rbacv1.UserKind).WithName(pki.FlannelUser))
	if _, err := rbac.ClusterRoleBindings().Apply(ctx, flannelBinding, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
		return fmt.Errorf("granting the pod network: %w", err)
	}
	if agent.ID != server.ID {
		if err := ApplyBootstrapToken(ctx, client, agent, AgentsGroup, "skiff's agent token", 0); err != nil {
			return err
		}
	}
	return ApplyBootstrapToken(ctx, client, server, ServersGroup+","+AgentsGroup, "skiff's server token", 0)
}

// ApplyBootstrapToken stores t as a bootstrap token Secret for
// authentication, in groups (comma-separated), expiring after ttl (0:
// never).
func ApplyBootstrapToken(ctx context.Context, client kubernetes.Interface, t Token, groups, description string, ttl time.Duration) error {
	data := map[string]string{
		bootstrapapi.BootstrapTokenIDKey:               t.ID,
		bootstrapapi.BootstrapTokenSecretKey:           t.Secret,
		bootstrapapi.BootstrapTokenUsageAuthentication: "true",
		bootstrapapi.BootstrapTokenExtraGroupsKey:      groups,
		bootstrapapi.BootstrapTokenDescriptionKey:      description,
	}
	if ttl > 0 {
		data[bootstrapapi.BootstrapTokenExpirationKey] = time.Now().Add(ttl).UTC().Format(time.RFC3339)
	}
	secret := corev1apply.Secret(bootstraputil.BootstrapTokenSecretName(t.ID), metav1.NamespaceSystem).
		WithType(bootstrapapi.SecretTypeBootstrapToken).
		WithLabels(map[string]string{"skiff.dev/managed": "true"}).
		WithData(bytesOf(data))
	if _, err := client.CoreV1().Secrets(metav1.NamespaceSystem).Apply(ctx, secret, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
		return fmt.Errorf("storing bootstrap token %s: %w", t.ID, err)
	}
	return nil
}

func bytesOf(m map[string]string) map[string][]byte {
	out := make(map[string][]byte, len(m))
	for k, v := range m {
		out[k] = []byte(v)
	}
	return out
}
