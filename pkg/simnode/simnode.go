// Package simnode registers simulated nodes: they heartbeat like kubelets,
// move pods bound to them to Running with an IP from the node's pod CIDR, and
// finish pod deletion, without running any container (the KWOK idea, built
// into skiff). Schedulers and controllers can so be tested at scale on a
// laptop, beside real nodes in the same cluster.
package simnode

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	netutils "k8s.io/utils/net"
)

// LabelSimulated marks simulated nodes, so tests and users can tell them
// from real ones (and select or avoid them).
const LabelSimulated = "skiff.dev/simulated"

// Config is the shape and number of the simulated nodes.
type Config struct {
	Count    int
	Prefix   string // node names are Prefix + index
	CPU      resource.Quantity
	Memory   resource.Quantity
	Pods     resource.Quantity
	Labels   map[string]string
	Taints   []corev1.Taint
	Version  string // reported as the kubelet version
	Workers  int    // pod status workers
	Interval time.Duration
}

// DefaultConfig is a roomy node, as KWOK's default is.
func DefaultConfig() Config {
	return Config{
		Prefix:   "skiff-sim-",
		CPU:      resource.MustParse("32"),
		Memory:   resource.MustParse("256Gi"),
		Pods:     resource.MustParse("110"),
		Workers:  8,
		Interval: 10 * time.Second,
	}
}

// Validate checks what flags cannot.
func (c Config) Validate() error {
	if c.Count < 0 {
		return fmt.Errorf("the number of simulated nodes cannot be negative")
	}
	if c.Count > 65535 {
		return fmt.Errorf("at most 65535 simulated nodes")
	}
	return nil
}

// Simulator runs the simulated nodes.
type Simulator struct {
	client kubernetes.Interface
	cfg    Config
	queue  workqueue.TypedRateLimitingInterface[string]
	pods   corelisters.PodLister
	nodes  corelisters.NodeLister

	mu    sync.Mutex
	ips   map[string]*podIPs // by node name
	owner map[string]string  // pod key -> node name, for releasing its IP
}

// Run registers the nodes and simulates them until ctx ends.
func Run(ctx context.Context, client kubernetes.Interface, cfg Config) error {
	if cfg.Count == 0 {
		return nil
	}
	s := &Simulator{
		client: client,
		cfg:    cfg,
		queue:  workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
		ips:    map[string]*podIPs{},
		owner:  map[string]string{},
	}
	defer s.queue.ShutDown()
	for i := range cfg.Count {
		s.ips[s.name(i)] = &podIPs{used: map[string]string{}}
	}
	klog.InfoS("Starting simulated nodes", "count", cfg.Count, "prefix", cfg.Prefix, "cpu", cfg.CPU.String(), "memory", cfg.Memory.String(), "pods", cfg.Pods.String())
	if err := s.register(ctx); err != nil {
		return err
	}

	factory := informers.NewSharedInformerFactory(client, 0)
	podInformer := factory.Core().V1().Pods()
	s.pods, s.nodes = podInformer.Lister(), factory.Core().V1().Nodes().Lister()
	enqueue := func(obj any) {
		pod, ok := obj.(*corev1.Pod)
		if !ok {
			if tomb, isTomb := obj.(cache.DeletedFinalStateUnknown); isTomb {
				pod, ok = tomb.Obj.(*corev1.Pod)
			}
		}
		if ok && s.simulates(pod.Spec.NodeName) {
			key, _ := cache.MetaNamespaceKeyFunc(pod)
			s.queue.Add(key)
		}
	}
	if _, err := podInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	factory.WaitForCacheSync(ctx.Done())

	for range max(cfg.Workers, 1) {
		go wait.UntilWithContext(ctx, s.work, time.Second)
	}
	go wait.UntilWithContext(ctx, s.renewLeases, cfg.Interval)
	go wait.UntilWithContext(ctx, s.reportStatus, 6*cfg.Interval)
	<-ctx.Done()
	return nil
}

func (s *Simulator) name(i int) string { return fmt.Sprintf("%s%d", s.cfg.Prefix, i) }

func (s *Simulator) simulates(node string) bool {
	_, ok := s.ips[node] // written only before the workers start
	return ok
}

func (s *Simulator) work(ctx context.Context) {
	for {
		key, quit := s.queue.Get()
		if quit {
			return
		}
		if err := s.sync(ctx, key); err != nil {
			klog.V(2).InfoS("Retrying simulated pod", "pod", key, "err", err)
			s.queue.AddRateLimited(key)
		} else {
			s.queue.Forget(key)
		}
		s.queue.Done(key)
	}
}

// sync does for one pod what a kubelet would.
func (s *Simulator) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	pod, err := s.pods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		s.release(key)
		return nil
	}
	if err != nil {
		return err
	}
	if pod.DeletionTimestamp != nil {
		// The containers "stopped" at once: finish the deletion as the
		// kubelet does once they have.
		err := s.client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{
			GracePeriodSeconds: new(int64),
			Preconditions:      &metav1.Preconditions{UID: &pod.UID},
		})
		if err == nil || apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			s.release(key)
			return nil
		}
		return err
	}
	if pod.Status.Phase != corev1.PodPending && pod.Status.Phase != "" {
		s.claim(key, pod) // known after a restart: keep its address taken
		return nil
	}
	node, err := s.nodes.Get(pod.Spec.NodeName)
	if err != nil {
		return err
	}
	ip, err := s.allocate(key, node, pod.Spec.HostNetwork)
	if err != nil {
		return err
	}
	running := pod.DeepCopy()
	running.Status = runningStatus(pod, nodeIP(node), ip)
	if _, err := s.client.CoreV1().Pods(ns).UpdateStatus(ctx, running, metav1.UpdateOptions{}); err != nil {
		if !apierrors.IsNotFound(err) {
			return err
		}
		s.release(key)
	}
	return nil
}

func runningStatus(pod *corev1.Pod, hostIP, podIP string) corev1.PodStatus {
	now := metav1.Now()
	st := corev1.PodStatus{
		Phase:     corev1.PodRunning,
		HostIP:    hostIP,
		HostIPs:   []corev1.HostIP{{IP: hostIP}},
		PodIP:     podIP,
		PodIPs:    []corev1.PodIP{{IP: podIP}},
		StartTime: &now,
		QOSClass:  pod.Status.QOSClass,
	}
	for _, t := range []corev1.PodConditionType{corev1.PodReadyToStartContainers, corev1.PodInitialized, corev1.PodScheduled, corev1.ContainersReady, corev1.PodReady} {
		st.Conditions = append(st.Conditions, corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now})
	}
	containerID := func(name string) string { return "simulated://" + string(pod.UID) + "/" + name }
	for _, c := range pod.Spec.InitContainers {
		st.InitContainerStatuses = append(st.InitContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: "simulated://" + c.Image, ContainerID: containerID(c.Name),
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: now, FinishedAt: now}},
		})
	}
	started := true
	for _, c := range pod.Spec.Containers {
		st.ContainerStatuses = append(st.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: "simulated://" + c.Image, ContainerID: containerID(c.Name),
			Ready: true, Started: &started,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	return st
}

func nodeIP(node *corev1.Node) string {
	for _, a := range node.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	return ""
}

// podIPs hands out addresses of one node's pod CIDR.
type podIPs struct {
	used map[string]string // ip -> pod key
	next int
}

func (s *Simulator) allocate(key string, node *corev1.Node, hostNetwork bool) (string, error) {
	if hostNetwork {
		return nodeIP(node), nil
	}
	if node.Spec.PodCIDR == "" {
		return "", fmt.Errorf("node %s has no pod CIDR yet (kube-controller-manager's node-ipam controller assigns it)", node.Name)
	}
	_, cidr, err := net.ParseCIDR(node.Spec.PodCIDR)
	if err != nil {
		return "", err
	}
	ones, bits := cidr.Mask.Size()
	size := 1 << min(bits-ones, 16)
	s.mu.Lock()
	defer s.mu.Unlock()
	pool := s.ips[node.Name]
	for range size {
		// From .2, as with the CNI bridge, whose gateway takes .1; never
		// the broadcast address.
		pool.next = pool.next%(size-3) + 2
		addr, err := netutils.GetIndexedIP(cidr, pool.next)
		if err != nil {
			return "", err
		}
		ip := addr.String()
		if _, taken := pool.used[ip]; !taken {
			pool.used[ip] = key
			s.owner[key] = node.Name
			return ip, nil
		}
	}
	return "", fmt.Errorf("pod CIDR %s of node %s is full", node.Spec.PodCIDR, node.Name)
}

func (s *Simulator) claim(key string, pod *corev1.Pod) {
	if pod.Status.PodIP == "" || pod.Spec.HostNetwork {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if pool, ok := s.ips[pod.Spec.NodeName]; ok {
		pool.used[pod.Status.PodIP] = key
		s.owner[key] = pod.Spec.NodeName
	}
}

func (s *Simulator) release(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	node, ok := s.owner[key]
	if !ok {
		return
	}
	delete(s.owner, key)
	for ip, k := range s.ips[node].used {
		if k == key {
			delete(s.ips[node].used, ip)
		}
	}
}
