package pki

// Names of the node's files in the agent's TLS directory. The server signs
// them from the node's certificate requests (see pkg/supervisor); the keys
// never leave the node.
const (
	ServingKubelet  = "serving-kubelet"
	ClientKubelet   = "client-kubelet"
	ClientKubeProxy = "client-kube-proxy"
	ClientLocalPath = "client-local-path"
	ClientFlannel   = "client-flannel"

	// LocalPathUser is the local storage provisioner's user name, which
	// manifests/local-storage.yaml grants its rights.
	LocalPathUser = "skiff:local-path-provisioner"
	// FlannelUser is the pod network's user name on every node: flannel
	// reads all Nodes, which a node's own identity may no longer do, and
	// the network policy controller all Pods, Namespaces and policies.
	FlannelUser = "skiff:flannel"
)
