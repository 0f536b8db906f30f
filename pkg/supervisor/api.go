package supervisor

// The join API's paths, under the apiserver's own port. The apiserver
// authenticates every request (bootstrap tokens, client certificates) and
// authorizes it with RBAC (JoinClusterRole) before the handler sees it.
const (
	PathPrefix = "/v1-skiff/"
	PathConfig = PathPrefix + "config"
	PathNode   = PathPrefix + "node"
)

// APIVersion is the version of the join API's types.
const APIVersion = "skiff.dev/v1alpha1"

// AgentConfig is what a server tells a joining node about the cluster.
type AgentConfig struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"` // AgentConfig
	// Servers are the apiserver URLs nodes use.
	Servers       []string `json:"servers"`
	ClusterCIDR   string   `json:"clusterCIDR"`
	ServiceCIDR   string   `json:"serviceCIDR"`
	ClusterDNS    string   `json:"clusterDNS"`
	ClusterDomain string   `json:"clusterDomain"`
	// FlannelBackend is the pod network's backend: vxlan, host-gw,
	// wireguard-native, or none (the user brings a CNI).
	FlannelBackend string `json:"flannelBackend"`
	// DisableNetworkPolicy says that nodes do not enforce NetworkPolicies
	// (so that the zero value, from any server, enforces them).
	DisableNetworkPolicy bool `json:"disableNetworkPolicy,omitempty"`
	// LocalStorage says whether the local-path add-on runs, whose
	// provisioner each node's agent runs; LocalStoragePath is the
	// directory for its volumes, "" for <data-dir>/storage on each node.
	LocalStorage     bool   `json:"localStorage"`
	LocalStoragePath string `json:"localStoragePath,omitempty"`
}

// The certificates a node asks for, by the purpose it names in its
// request. The server decides each one's identity; a request that asks for
// another is refused.
const (
	CertKubeletClient  = "kubelet-client"  // system:node:<name>, system:nodes
	CertKubeletServing = "kubelet-serving" // <name>, for the kubelet's port
	CertKubeProxy      = "kube-proxy"      // system:kube-proxy
	CertLocalPath      = "local-path"      // the local storage provisioner
	CertFlannel        = "flannel"         // the pod network (skiff:flannel)
)

// NodeRequest is a node's request for its certificates: it sends
// certificate requests, never keys.
type NodeRequest struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"` // NodeRequest
	NodeName   string `json:"nodeName"`
	// NodePassword proves the node is the one that first took its name.
	NodePassword string `json:"nodePassword"`
	// CSRs are PEM certificate requests by purpose (Cert* constants).
	CSRs map[string]string `json:"csrs"`
}

// NodeResponse carries the node's signed certificates and the CAs it
// trusts.
type NodeResponse struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"` // NodeResponse
	// Certificates are PEM certificates by purpose.
	Certificates map[string]string `json:"certificates"`
	// ServerCA verifies the apiserver; ClientCA the apiserver's calls to
	// the kubelet.
	ServerCA string `json:"serverCA"`
	ClientCA string `json:"clientCA"`
}

// PathServer is where a server joining the cluster gets its shared
// secrets (and, with embedded etcd, its etcd membership).
const PathServer = PathPrefix + "server"

// Datastore kinds a server reports to a joining server.
const (
	DatastoreSQLite   = "sqlite"   // one server only
	DatastoreEtcd     = "etcd"     // embedded etcd: the joiner becomes a member
	DatastoreExternal = "external" // shared: the joiner uses the same endpoint
)

// ServerRequest is a joining server's request.
type ServerRequest struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"` // ServerRequest
	// Name is the joining server's etcd member name.
	Name string `json:"name"`
	// EtcdPeerURL is where its etcd member will listen for peers; empty
	// when it does not run embedded etcd.
	EtcdPeerURL string `json:"etcdPeerURL,omitempty"`
	// ClusterCIDR, ServiceCIDR and ClusterDomain are the joiner's, which
	// must be the cluster's.
	ClusterCIDR   string `json:"clusterCIDR"`
	ServiceCIDR   string `json:"serviceCIDR"`
	ClusterDomain string `json:"clusterDomain"`
	// SecretsEncryption is the joiner's --secrets-encryption, which must
	// be the cluster's.
	SecretsEncryption bool `json:"secretsEncryption"`
}

// ServerResponse carries what every server of a cluster shares: the CAs
// and their keys, the service-account key, the agent token, and how to
// reach the datastore.
type ServerResponse struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"` // ServerResponse
	// Files are the shared files of the TLS directory by their path in
	// it, PEM.
	Files      map[string]string `json:"files"`
	AgentToken string            `json:"agentToken"`
	// Datastore is one of the Datastore* kinds.
	Datastore string `json:"datastore"`
	// EtcdInitialCluster is the joiner's etcd initial cluster
	// (name=peerURL,...) after it was added as a learner.
	EtcdInitialCluster string `json:"etcdInitialCluster,omitempty"`
	// EncryptionConfig is the apiservers' encryption configuration (with
	// its keys); empty when Secrets are not encrypted.
	EncryptionConfig string `json:"encryptionConfig,omitempty"`
	// EtcdClientURLs reach the cluster's current members.
	EtcdClientURLs []string `json:"etcdClientURLs,omitempty"`
}
